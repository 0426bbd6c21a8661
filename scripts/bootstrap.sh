#!/usr/bin/env bash
# Sets up everything `make demo` and `make test` need on a fresh Debian machine:
# Debian packages (when missing), a local virtual environment, CPU torch, then demixer itself.
set -euo pipefail
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
# ffmpeg: FFmpeg formats; fluidsynth + a GM soundfont, espeak-ng, flite, festival: `demixer data synth`
APT_PACKAGES=(ffmpeg fluidsynth timgm6mb-soundfont espeak-ng flite festival festvox-kallpc16k)
# chromium: the web page's browser test (Playwright drives Debian's Chromium), only for `make test`
if [ "${WITH_TEST:-0}" = 1 ]; then APT_PACKAGES+=(chromium); fi

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "creating virtual environment $VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
fi
# torch first and pinned: an unpinned torch would pull a multi-GB CUDA build.
"$VENV/bin/python" -c "import torch" 2>/dev/null || "$VENV/bin/python" -m pip install -q torch==2.13.0
# `make demo` needs only the plain install (separation); `make test` and `make lint` take every extra and the dev tools.
if [ "${WITH_TEST:-0}" = 1 ]; then
  "$VENV/bin/python" -m pip install -q -e ".[dev]"
else
  "$VENV/bin/python" -m pip install -q -e .
fi
# Reference packages for the parity tests and benchmarks (openunmix, SpeechBrain, Asteroid) declare torchaudio,
# which would pull another torch (see ../shared/NOTES.md); their model code does not use it, so they go in
# without dependencies, with the few pure-Python ones their imports need.
if [ "${WITH_TEST:-0}" = 1 ]; then
  "$VENV/bin/python" -c "import importlib.util as u, sys; sys.exit(any(u.find_spec(m) is None for m in ('openunmix', 'speechbrain', 'hyperpyyaml', 'ruamel.yaml', 'asteroid', 'asteroid_filterbanks')))" 2>/dev/null \
    || "$VENV/bin/python" -m pip install -q --no-deps "openunmix==1.3.0" "speechbrain==1.1.2" "hyperpyyaml==1.2.3" \
      "ruamel.yaml==0.19.1" "asteroid==0.7.0" "asteroid-filterbanks==0.4.0"
fi
touch "$VENV/.installed"
if [ "${WITH_TEST:-0}" = 1 ]; then touch "$VENV/.installed-test"; fi
