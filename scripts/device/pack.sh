#!/bin/bash
# Build .gpu/ (git-ignored through .git/info/exclude): what a lent GPU machine (the `device` tool) needs to train
# demixer-2spk there and that does not travel with the tracked tree: the utterances at the model's 8 kHz as FLAC
# (13 MB), the real speech folders of ../shared/data/speech, wheels of the runtime dependencies its image lacks
# (Python 3.12), and this folder's scripts. Run from the repository root, then see scripts/device/README.md.
set -euo pipefail
grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
rm -rf .gpu && mkdir -p .gpu/data/speech .gpu/whl
for d in librispeech cmu_arctic sms_tools librispeech_rtvc vctk vctk_rtvc; do cp -r ../shared/data/speech/$d .gpu/data/speech/; done
.venv/bin/python - <<'PY'
import soundfile as sf, soxr
from pathlib import Path
src, dst = Path("data/synth-speech/utterances"), Path(".gpu/data/utterances")
for f in sorted(src.rglob("*.wav")):
    x, sr = sf.read(f, dtype="float32")
    out = dst / f.relative_to(src).with_suffix(".flac")
    out.parent.mkdir(parents=True, exist_ok=True)
    sf.write(out, soxr.resample(x, sr, 8000), 8000, subtype="PCM_16")
PY
for w in pydantic pydantic_core annotated-types typing-inspection soundfile cffi pycparser soxr typing_extensions; do
  v=$(.venv/bin/python -c "import importlib.metadata as m; print(m.version('$w'))")
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .gpu/whl "$w==$v"
done
cp scripts/device/run_2spk.sh scripts/device/amp_probe.py .gpu/
du -sh .gpu
