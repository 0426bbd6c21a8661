"""Spectrogram and metric-over-time images (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..transforms import STFT


def _db_spectrogram(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    n_fft = 2048 if sample_rate > 24000 else 512
    x = torch.from_numpy(np.ascontiguousarray(np.atleast_2d(audio).mean(0), dtype=np.float32))
    mag = STFT(n_fft, n_fft // 4)(x).abs().numpy()
    return 20 * np.log10(mag + 1e-6)


def save_spectrograms(path: Path, panels: list[tuple[str, np.ndarray]], sample_rate: int, columns: int = 2,
                      title: str | None = None) -> Path:
    """A grid of log-magnitude spectrograms (dB, common colour scale), one panel per ``(title, audio [C, T])``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = int(np.ceil(len(panels) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(5.5 * columns, 2.6 * rows), squeeze=False)
    specs = [_db_spectrogram(a, sample_rate) for _, a in panels]
    top = max(float(s.max()) for s in specs)
    for ax, (name, _), spec in zip(axes.flat, panels, specs):
        seconds = spec.shape[1] * (2048 if sample_rate > 24000 else 512) / 4 / sample_rate
        ax.imshow(spec, origin="lower", aspect="auto", cmap="magma", vmin=top - 80, vmax=top,
                  extent=(0, seconds, 0, sample_rate / 2000))
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("s", fontsize=8)
        ax.set_ylabel("kHz", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def save_metric_curves(path: Path, times: np.ndarray, curves: dict[str, np.ndarray], ylabel: str, title: str) -> Path:
    """Framewise metrics over time, one line per source."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 3))
    for name, values in curves.items():
        ax.plot(times, values, marker=".", label=name)
    ax.set_xlabel("time (s)")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
