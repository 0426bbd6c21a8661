"""DNSMOS P.835 (Reddy et al. 2022): a reference-free estimate of how listeners would rate speech, as three mean
opinion scores from 1 to 5: ``sig`` (the speech itself), ``bak`` (the background: 5 means none heard) and
``ovrl`` (overall).

Microsoft's ONNX model runs through onnxruntime; the model file comes from the ``speechmos`` wheel
(``pip install demixer[eval]``), so it works offline. The model takes 9.01 s of 16 kHz audio; a recording is
scored on windows of that length every second (shorter ones are repeated to fill one window) and the window
scores are averaged, then mapped through the published polynomial calibration, as the DNSMOS reference code
(and speechmos) does. Input: any rate and channel count (downmixed, resampled to 16 kHz, clipped to [-1, 1]).
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from typing import Any

import numpy as np

from ..audio.resample import resample
from ..extras import require_extra

RATE = 16000
WINDOW = int(9.01 * RATE)
# the reference code's calibration of the raw network outputs (non-personalised model)
_CALIBRATION = {
    "sig": np.poly1d([-0.08397278, 1.22083953, 0.0052439]),
    "bak": np.poly1d([-0.13166888, 1.60915514, -0.39604546]),
    "ovrl": np.poly1d([-0.06766283, 1.11546468, 0.04602535]),
}


@lru_cache(maxsize=1)
def _session() -> Any:
    require_extra("eval", "DNSMOS")
    import onnxruntime as ort

    model = resources.files("speechmos") / "dnsmos_models" / "sig_bak_ovr.onnx"
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])


def dnsmos(audio: np.ndarray, sample_rate: int) -> dict[str, float]:
    """``{"sig", "bak", "ovrl"}`` of a recording ``[C, T]`` or ``[T]`` (see the module docstring)."""
    x = np.asarray(audio, dtype=np.float32)
    x = x.mean(axis=0) if x.ndim == 2 else x
    if sample_rate != RATE:
        x = resample(x[None], sample_rate, RATE)[0]
    x = np.clip(x, -1.0, 1.0).astype(np.float32)
    if x.size == 0 or not np.any(x):
        raise ValueError("DNSMOS needs a recording that is not silent")
    while x.size < WINDOW:  # as the reference code does: repeat a short recording until one window fits
        x = np.concatenate([x, x])
    # the reference code's windows, one per second, its float arithmetic included: a window whose end rounds
    # down to one sample short is left out, as the reference leaves it out
    windows = int(np.floor(x.size / RATE) - 9.01) + 1
    spans = [(i * RATE, int((i + 9.01) * RATE)) for i in range(windows)]
    session = _session()
    raw = np.array([session.run(None, {"input_1": x[None, a:b]})[0][0] for a, b in spans if b - a >= WINDOW])
    scores = {name: _CALIBRATION[name](raw[:, i]) for i, name in enumerate(("sig", "bak", "ovrl"))}
    return {name: round(float(np.mean(v)), 3) for name, v in scores.items()}
