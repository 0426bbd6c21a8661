"""``demixer inspect``: look at a file, a folder of stems, and how stems compare with references over time."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import numpy as np

from ..audio import AUDIO_EXTENSIONS, load_audio, resample
from ..errors import DemixerError
from .bsseval import bss_eval_v4
from .plots import save_metric_curves, save_predicted_quality, save_spectrograms
from .quality import quality_signals


@dataclass
class InspectResult:
    images: list[Path] = field(default_factory=list)
    medians: dict[str, dict[str, float]] = field(default_factory=dict)  # stem -> metric -> median over frames
    verdicts: list[str] = field(default_factory=list)  # the quality estimator's line per stem


def _audio_files(folder: Path) -> dict[str, Path]:
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)
    return {p.name.split(".")[0]: p for p in files}


def _load_all(files: dict[str, Path]) -> tuple[dict[str, np.ndarray], int]:
    loaded = {k: load_audio(p) for k, p in files.items()}
    rate = max(sr for _, sr in loaded.values())
    arrays = {k: resample(a, sr, rate) for k, (a, sr) in loaded.items()}
    n = max(a.shape[1] for a in arrays.values())
    c = max(a.shape[0] for a in arrays.values())
    return {
        k: np.pad(np.broadcast_to(a, (c, a.shape[1])), ((0, 0), (0, n - a.shape[1]))) for k, a in arrays.items()
    }, rate


def inspect_path(
    path: str | Path,
    out: str | Path | None = None,
    reference: str | Path | None = None,
    max_seconds: float | None = None,
) -> InspectResult:
    """PNG spectrograms of a file or of a folder of stems (with their mixture), the quality estimator's predicted SDR
    per second under each stem's spectrogram (``inspect_predicted_sdr.png``, no reference needed), and with
    ``reference`` (a folder of reference stems of the same names) framewise BSSEval v4 SDR/SIR/SAR over time.

    Raises:
        DemixerError: nothing to inspect, or no stem name shared with the references.
    """
    path = Path(path)
    result = InspectResult()
    if path.is_file():
        audio, rate = load_audio(path)
        if max_seconds:
            audio = audio[:, : int(max_seconds * rate)]
        target = Path(out) if out else path.with_suffix(".png")
        target = target / f"{path.stem}.png" if target.suffix.lower() != ".png" else target
        result.images.append(save_spectrograms(target, [(path.name, audio)], rate, columns=1))
        return result
    if not path.is_dir():
        raise DemixerError(f"{path} does not exist")
    files = _audio_files(path)
    if not files:
        raise DemixerError(f"{path} holds no audio file")
    arrays, rate = _load_all(files)
    if max_seconds:
        arrays = {k: v[:, : int(max_seconds * rate)] for k, v in arrays.items()}
    stems = {k: v for k, v in arrays.items() if not k.startswith("mixture")}
    mixture = arrays["mixture"] if "mixture" in arrays else cast(np.ndarray, sum(stems.values()))  # files hold one
    panels = [("mixture" if "mixture" in arrays else "mixture (sum of the stems)", mixture)] + list(stems.items())
    out_dir = Path(out) if out else path
    result.images.append(save_spectrograms(out_dir / "inspect_spectrograms.png", panels, rate, title=str(path)))
    estimates = {k: v for k, v in quality_signals(mixture, stems, rate)["stems"].items() if "verdict" in v}
    if estimates:
        result.images.append(
            save_predicted_quality(
                out_dir / "inspect_predicted_sdr.png", stems, estimates, rate, title=f"predicted quality: {path}"
            )
        )
        result.verdicts = [v["verdict"] for v in estimates.values()]
    if reference is not None:
        ref_files = _audio_files(Path(reference))
        common = [k for k in stems if k in ref_files]
        if not common:
            raise DemixerError(
                f"no stem of {path} ({', '.join(stems)}) has a reference in {reference} ({', '.join(ref_files)})"
            )
        refs, ref_rate = _load_all({k: ref_files[k] for k in common})
        refs = {k: resample(v, ref_rate, rate) for k, v in refs.items()}
        n = min(min(v.shape[1] for v in refs.values()), min(stems[k].shape[1] for k in common))
        ref = np.stack([refs[k][:, :n] for k in common]).astype(np.float64)
        est = np.stack([stems[k][:, :n] for k in common]).astype(np.float64)
        res = bss_eval_v4(reference=ref, estimate=est, window=rate, hop=rate)
        times = res.times(rate)
        for metric in ("sdr", "sir", "sar"):
            values = getattr(res, metric)
            result.images.append(
                save_metric_curves(
                    out_dir / f"inspect_{metric}.png",
                    times,
                    dict(zip(common, values)),
                    f"{metric.upper()} (dB)",
                    f"framewise BSSEval v4 {metric.upper()}, 1 s windows: {path.name}",
                )
            )
        med = res.median()
        result.medians = {k: {m: float(med[m][i]) for m in ("SDR", "SIR", "SAR", "ISR")} for i, k in enumerate(common)}
    return result
