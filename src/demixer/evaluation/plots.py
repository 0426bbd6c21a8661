"""Spectrogram and metric-over-time images (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..transforms import STFT


def _spectrogram_frames(length: int, sample_rate: int, max_frames: int = 2048) -> tuple[STFT, np.ndarray | None]:
    """The STFT of the images and, when a signal of ``length`` samples has more than ``max_frames`` hops, the
    starts of ``max_frames`` evenly spaced frames to take instead (``None``: every hop's frame)."""
    n_fft = 2048 if sample_rate > 24000 else 512
    stft = STFT(n_fft, n_fft // 4)
    if stft.frames(length) <= max_frames:
        return stft, None
    return stft, np.linspace(0, length - n_fft, max_frames).astype(int)


def _db_of_frames(frames: torch.Tensor, stft: STFT) -> np.ndarray:
    """dB magnitudes of windowed frames ``[N, n_fft]`` -> ``[F, N]``."""
    return 20 * np.log10(torch.fft.rfft(frames * stft.window, dim=-1).abs().T.numpy() + 1e-6)


def _db_spectrogram(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Log-magnitude spectrogram (dB) of the channels' mean, ``[F, N]``, as the images show it
    (:meth:`ImageSketch.spectrogram_db`)."""
    mono = np.atleast_2d(np.asarray(audio, dtype=np.float32)).mean(0)
    sketch = ImageSketch(mono.size, sample_rate)
    sketch.add(mono)
    return sketch.spectrogram_db()


def _show_spectrogram(ax, spec: np.ndarray, top: float, seconds: float, sample_rate: int, **kwargs) -> None:
    """Draw a dB spectrogram ``[F, N]`` on ``ax``: 80 dB of range below ``top``, time in s, frequency in kHz."""
    ax.imshow(
        spec,
        origin="lower",
        aspect="auto",
        cmap="magma",
        vmin=top - 80,
        vmax=top,
        extent=(0, seconds, 0, sample_rate / 2000),
        **kwargs,
    )


def _save_figure(fig, path: Path, title: str | None = None) -> Path:
    """Title (if any), tight layout, write ``path`` at 80 dpi (its folder made), close the figure."""
    import matplotlib.pyplot as plt

    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


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
        _show_spectrogram(ax, spec, top, seconds, sample_rate)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("s", fontsize=8)
        ax.set_ylabel("kHz", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    return _save_figure(fig, path, title)


def save_predicted_quality(
    path: Path, stems: dict[str, np.ndarray], estimates: dict[str, dict], sample_rate: int, title: str | None = None
) -> Path:
    """Each stem's spectrogram with the quality estimator's predicted SDR per second under it: seconds predicted
    under 0 dB shaded red, seconds whose source is probably absent shaded grey (``estimates``: the report's stem
    entries, :func:`demixer.estimator.predict.estimate`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [k for k in stems if k in estimates]
    fig, axes = plt.subplots(
        2 * len(names),
        1,
        figsize=(9, 2.9 * len(names)),
        squeeze=False,
        gridspec_kw={"height_ratios": [2, 1] * len(names)},
    )
    specs = {k: _db_spectrogram(stems[k], sample_rate) for k in names}
    top = max(float(s.max()) for s in specs.values())
    for i, k in enumerate(names):
        seconds = np.atleast_2d(stems[k]).shape[-1] / sample_rate
        spec_ax, curve_ax = axes[2 * i, 0], axes[2 * i + 1, 0]
        _show_spectrogram(spec_ax, specs[k], top, seconds, sample_rate)
        entry = estimates[k]
        spec_ax.set_title(entry.get("verdict", k), fontsize=9)
        spec_ax.set_ylabel("kHz", fontsize=8)
        curve = np.asarray(entry["predicted_sdr_per_second"], float)
        centres = np.arange(curve.size) + 0.5
        curve_ax.plot(centres, curve, color="black", lw=1)
        for a, b in entry.get("weak_seconds", []):
            curve_ax.axvspan(a, min(b, seconds), color="tab:red", alpha=0.25, lw=0)
        for a, b in entry.get("absent_seconds", []):
            for ax in (spec_ax, curve_ax):
                ax.axvspan(a, min(b, seconds), color="grey", alpha=0.35, lw=0)
        curve_ax.axhline(0, color="tab:red", lw=0.6, ls="--")
        curve_ax.set_xlim(0, seconds)
        curve_ax.set_ylabel("predicted\nSDR (dB)", fontsize=7)
        curve_ax.tick_params(labelsize=7)
        spec_ax.tick_params(labelsize=7)
    axes[-1, 0].set_xlabel("s", fontsize=8)
    return _save_figure(fig, path, title)


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
    return _save_figure(fig, path)


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
    :class:`ImageSketch` makes the same images from a signal read block by block.

    Args:
        audio: the signal. Shape: ``[C, T]`` or ``[T]``.
        top_db: the colour scale's top in dB (default: the signal's own maximum); pass a common
            value to compare stems of one mixture.
    """
    mono = np.atleast_2d(np.asarray(audio, dtype=np.float32)).mean(0)
    sketch = ImageSketch(mono.size, sample_rate, width_px)
    sketch.add(mono)
    return sketch.save(waveform_path, spectrogram_path, top_db)


class ImageSketch:
    """What the waveform and spectrogram images of one signal need, gathered block by block: the min/max
    envelope per image column, the peak, and the spectrogram frames (memory: an image's worth, whatever
    the length).

    Examples:
        >>> sketch = ImageSketch(length=44100, sample_rate=44100)
        >>> sketch.add(np.zeros(44100, np.float32))  # mono blocks, in order, ``length`` samples in all
    """

    def __init__(self, length: int, sample_rate: int, width_px: int = 720) -> None:
        self.length, self.sample_rate, self.width_px = length, sample_rate, width_px
        self.columns = max(1, min(width_px * 2, length))
        self.edges = np.linspace(0, length, self.columns + 1).astype(int)
        self.lo = np.full(self.columns, np.inf, np.float32)
        self.hi = np.full(self.columns, -np.inf, np.float32)
        self.peak = 0.0
        self.stft, self.starts = _spectrogram_frames(length, sample_rate)
        self._whole: list[np.ndarray] = []  # few frames: the whole (short) signal, for the exact spectrogram
        self._frames: list[np.ndarray] = []
        self._carry = np.zeros(0, np.float32)  # the tail of the last block, for frames across blocks
        self._offset = 0

    def add(self, mono: np.ndarray) -> None:
        """The next samples of the signal (channels already averaged). Shape: ``[n]``."""
        mono = np.asarray(mono, dtype=np.float32)
        lo, hi = self._offset, self._offset + mono.size
        first = int(np.searchsorted(self.edges, lo, side="right")) - 1
        for c in range(max(0, first), self.columns):
            a, b = max(self.edges[c], lo), min(self.edges[c + 1], hi)
            if a >= hi:
                break
            if b > a:
                segment = mono[a - lo : b - lo]
                self.lo[c] = min(self.lo[c], float(segment.min()))
                self.hi[c] = max(self.hi[c], float(segment.max()))
        if mono.size:
            self.peak = max(self.peak, float(np.abs(mono).max()))
        if self.starts is None:
            self._whole.append(mono)
        else:
            n_fft = self.stft.n_fft
            window = np.concatenate([self._carry, mono])  # samples [base, hi)
            base = hi - window.size
            while len(self._frames) < self.starts.size and self.starts[len(self._frames)] + n_fft <= hi:
                s = int(self.starts[len(self._frames)]) - base  # frames are taken in order, each once
                self._frames.append(window[s : s + n_fft].copy())
            self._carry = window[max(0, window.size - n_fft) :]
        self._offset = hi

    def spectrogram_db(self) -> np.ndarray:
        """The log-magnitude spectrogram of what was added, as :func:`_db_spectrogram` gives it. ``[F, N]``."""
        if self.starts is None:
            whole = np.concatenate(self._whole) if self._whole else np.zeros(1, np.float32)
            return 20 * np.log10(self.stft(torch.from_numpy(whole)).abs().numpy() + 1e-6)
        return _db_of_frames(torch.from_numpy(np.stack(self._frames)), self.stft)

    def save(self, waveform_path: Path, spectrogram_path: Path, top_db: float | None = None) -> tuple[Path, Path]:
        """Write both PNGs; ``top_db`` as in :func:`save_audio_images`."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        dpi, width_px = 80, self.width_px
        lo = np.where(np.isfinite(self.lo), self.lo, 0.0)
        hi = np.where(np.isfinite(self.hi), self.hi, 0.0)
        seconds = self.length / self.sample_rate
        t = np.linspace(0, seconds, self.columns)

        fig = Figure(figsize=(width_px / dpi, 1.0), dpi=dpi)
        FigureCanvasAgg(fig)
        ax = fig.add_axes((0, 0, 1, 1))
        ax.fill_between(t, lo, hi, color="#3b82f6", linewidth=0)
        peak = max(self.peak, 1e-3)
        ax.set_xlim(0, seconds)
        ax.set_ylim(-peak, peak)
        ax.axis("off")
        waveform_path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(waveform_path, dpi=dpi)

        spec = self.spectrogram_db()
        top = float(spec.max()) if top_db is None else top_db
        fig = Figure(figsize=(width_px / dpi, 1.6), dpi=dpi)
        FigureCanvasAgg(fig)
        ax = fig.add_axes((0, 0, 1, 1))
        _show_spectrogram(ax, spec, top, seconds, self.sample_rate, interpolation="nearest")
        ax.axis("off")
        spectrogram_path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(spectrogram_path, dpi=dpi)
        return waveform_path, spectrogram_path
