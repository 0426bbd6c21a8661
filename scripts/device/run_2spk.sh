#!/bin/bash
# On a lent GPU machine (the `device` tool), from the repository root: `MIN=7 bash .gpu/run_2spk.sh`. Trains
# scripts/device/demixer-2spk-gpu.yaml for MIN minutes into $OUT/run (7 files, all under 16 MiB, so the tool brings them
# back even if the run is cut), after a 10 s probe that picks bf16 or fp32 by speed; then checks every default
# model on CUDA against the CPU (tests/test_cuda.py). .gpu/ is made here by scripts/device/pack.sh.
set -u
cd "$(dirname "$0")/.."
MIN=${MIN:-7.0}; PY=${PY:-python3}; OUT=${OUT:-/tmp/out}
if [ -z "${SKIP_PIP:-}" ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/whl/*.whl || exit 3
  export PYTHONPATH=/tmp/site:$PWD/src
fi
export PYTHONUNBUFFERED=1
mkdir -p data/synth-speech ../shared/data
[ -e data/synth-speech/utterances ] || ln -sfn "$PWD/.gpu/data/utterances" data/synth-speech/utterances
[ -e ../shared/data/speech ] || ln -sfn "$PWD/.gpu/data/speech" ../shared/data/speech
nvidia-smi -L 2>/dev/null; nproc
$PY -c "import torch, demixer.training.trainer; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" || exit 4
AMP=$($PY .gpu/amp_probe.py | tee /dev/stderr | grep -o 'AMP=.*' | cut -d= -f2)
$PY -m demixer train -c scripts/device/demixer-2spk-gpu.yaml --overwrite --out "$OUT/run" schedule.minutes=$MIN train.amp=${AMP:-true} data.workers=14 ${EXTRA:-} 2>&1 | grep -v Warning
tail -3 "$OUT/run/valid.csv"; ls -la "$OUT/run"
timeout 90 $PY -m pytest -q -p no:cacheprovider tests/test_cuda.py 2>&1 | tail -5
