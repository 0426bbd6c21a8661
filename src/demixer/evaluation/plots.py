"""Spectrogram and metric-over-time images (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..transforms import STFT


def _db_spectrogram(audio: np.ndarray, sample_rate: int, max_frames: int = 2048) -> np.ndarray:
    """Log-magnitude spectrogram (dB) of the channels' mean, ``[F, N]``: every hop's frame when there are at
    most ``max_frames`` of them, else ``max_frames`` evenly spaced frames (an image has fewer columns than
    that anyway), so the memory does not grow with the track's length."""
    n_fft = 2048 if sample_rate > 24000 else 512
    x = torch.from_numpy(np.ascontiguousarray(np.atleast_2d(audio).mean(0), dtype=np.float32))
    stft = STFT(n_fft, n_fft // 4)
    if stft.frames(x.shape[-1]) <= max_frames:
        mag = stft(x).abs().numpy()
    else:
        starts = np.linspace(0, x.shape[-1] - n_fft, max_frames).astype(int)
        frames = torch.stack([x[s : s + n_fft] for s in starts]) * stft.window  # [N, n_fft]
        mag = torch.fft.rfft(frames, dim=-1).abs().T.numpy()
    return 20 * np.log10(mag + 1e-6)


def save_spectrograms(
    path: Path, panels: list[tuple[str, np.ndarray]], sample_rate: int, columns: int = 2, title: str | None = None
) -> Path:
    """A grid of log-magnitude spectrograms (dB, common colour scale), one panel per ``(title, audio [C, T])``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = int(np.ceil(len(panels) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(5.5 * columns, 2.6 * rows), squeeze=False)
    specs = [_db_spectrogram(a, sample_rate) for _, a in panels]
    top = max(float(s.max()) for s in specs)
    for ax, (name, audio), spec in zip(axes.flat, panels, specs):
        seconds = np.atleast_2d(audio).shape[-1] / sample_rate
        ax.imshow(
            spec,
            origin="lower",
            aspect="auto",
            cmap="magma",
            vmin=top - 80,
            vmax=top,
            extent=(0, seconds, 0, sample_rate / 2000),
        )
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("s", fontsize=8)
        ax.set_ylabel("kHz", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(panels) :]:
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


def spectrogram_top_db(audio: np.ndarray, sample_rate: int) -> float:
    """The loudest bin of a signal's log spectrogram: a common colour-scale top for images of its stems."""
    return float(_db_spectrogram(audio, sample_rate).max())


def save_audio_images(
    audio: np.ndarray,
    sample_rate: int,
    waveform_path: Path,
    spectrogram_path: Path,
    width_px: int = 720,
    top_db: float | None = None,
) -> tuple[Path, Path]:
    """A waveform strip (min/max envelope) and a log-spectrogram image of one signal.

    Uses matplotlib's object API (no pyplot state), so server threads can call it concurrently.

    Args:
        audio: the signal. Shape: ``[C, T]`` or ``[T]``.
        top_db: the colour scale's top in dB (default: the signal's own maximum); pass a common
            value to compare stems of one mixture.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    mono = np.atleast_2d(np.asarray(audio, dtype=np.float32)).mean(0)
    dpi = 80
    columns = max(1, min(width_px * 2, mono.size))
    edges = np.linspace(0, mono.size, columns + 1).astype(int)
    lo = np.array([mono[a:b].min() if b > a else 0.0 for a, b in zip(edges[:-1], edges[1:])])
    hi = np.array([mono[a:b].max() if b > a else 0.0 for a, b in zip(edges[:-1], edges[1:])])
    seconds = mono.size / sample_rate
    t = np.linspace(0, seconds, columns)

    fig = Figure(figsize=(width_px / dpi, 1.0), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.fill_between(t, lo, hi, color="#3b82f6", linewidth=0)
    peak = max(float(np.abs(mono).max()), 1e-3)
    ax.set_xlim(0, seconds)
    ax.set_ylim(-peak, peak)
    ax.axis("off")
    waveform_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(waveform_path, dpi=dpi)

    spec = _db_spectrogram(mono, sample_rate)
    top = float(spec.max()) if top_db is None else top_db
    fig = Figure(figsize=(width_px / dpi, 1.6), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.imshow(
        spec,
        origin="lower",
        aspect="auto",
        cmap="magma",
        vmin=top - 80,
        vmax=top,
        extent=(0, seconds, 0, sample_rate / 2000),
        interpolation="nearest",
    )
    ax.axis("off")
    spectrogram_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(spectrogram_path, dpi=dpi)
    return waveform_path, spectrogram_path
