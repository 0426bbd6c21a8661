"""Training the quality estimator on separations with known references.

Data: a folder of tracks, ``TRACKS/<track>/mixture.wav`` and one reference per stem (``vocals.wav``,
``drums.wav`` ...), and the outputs of separators on those mixtures, ``SEPARATIONS/<separator>/<track>/<stem>.wav``
(what ``demixer separate -o SEPARATIONS`` writes). A stem ``no_X`` is scored against the mixture minus ``X``. For
the training tracks, :data:`DEGRADATIONS` adds stems made worse on purpose (leaking, muted, mislabelled, smeared by
noisy masks, a karaoke split with varying leak), so the estimator sees the whole range of SDRs.

``python -m demixer.estimator.training --tracks T --separations S --train a,b --valid c --out DIR`` writes
``DIR/quality-estimator.safetensors`` (the weights) and ``DIR/training.json`` (the data, steps and validation
numbers, for the card). Features are cached in ``DIR/features``.
"""

from __future__ import annotations

import argparse
import functools
import json
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from scipy.stats import spearmanr

from .features import track_sdr, window_features, window_sdr
from .model import STEM_CLASSES, QualityEstimator, class_vector, track_sdr_from_windows
from .predict import predict_windows

SDR_RANGE = (-30.0, 40.0)  # targets are clipped to this
CROP = 30  # windows per training sequence


@dataclass
class Example:
    """One stem estimate of one track: its window features and the true per-window SDR and silence."""

    track: str
    separator: str
    stem: str
    features: np.ndarray  # [W, FEATURES]
    energy: np.ndarray  # [W]
    sdr: np.ndarray  # [W]
    silent: np.ndarray  # [W] bool
    track_sdr: float  # nan when the reference is silent throughout


def _read(path: Path) -> tuple[np.ndarray, int]:
    audio, rate = sf.read(path, dtype="float32", always_2d=True)
    return audio.T, rate


@functools.lru_cache(maxsize=1)  # a track is read once, and only when something of it is not cached
def references(track: Path) -> tuple[np.ndarray, dict[str, np.ndarray], int]:
    mixture, rate = _read(track / "mixture.wav")
    refs = {p.stem: _read(p)[0] for p in sorted(track.glob("*.wav")) if p.stem != "mixture"}
    return mixture, refs, rate


def reference_for(stem: str, mixture: np.ndarray, refs: dict[str, np.ndarray]) -> np.ndarray | None:
    if stem in refs:
        return refs[stem]
    if stem.startswith("no_") and stem[3:] in refs:
        return mixture - refs[stem[3:]]
    return None


def examples_of(
    track: str, separator: str, mixture: np.ndarray, stems: dict[str, np.ndarray], refs: dict[str, np.ndarray], rate
) -> list[Example]:
    n = min(mixture.shape[-1], *(s.shape[-1] for s in stems.values()))
    mixture = mixture[:, :n]
    stems = {k: v[:, :n] for k, v in stems.items()}
    features, energy = window_features(mixture, stems, rate)
    out = []
    for stem, estimate in stems.items():
        reference = reference_for(stem, mixture, refs)
        if reference is None:
            continue
        reference = reference[:, :n]
        sdr, silent = window_sdr(reference, estimate, rate)
        out.append(
            Example(track, separator, stem, features[stem], energy[stem], sdr, silent, track_sdr(reference, estimate))
        )
    return out


def _envelope(n: int, rate: int, lo_db: float, hi_db: float, rng: np.random.Generator) -> np.ndarray:
    """A gain that wanders between ``lo_db`` and ``hi_db``, a new value every 5 s, interpolated: ``[n]``."""
    points = rng.uniform(lo_db, hi_db, size=n // (5 * rate) + 2)
    return 10 ** (np.interp(np.arange(n), np.linspace(0, n, points.size), points) / 20)


def _leak(mixture: np.ndarray, refs: dict[str, np.ndarray], rate: int, rng: np.random.Generator):
    """Each stem plus a slowly varying share (-30..-3 dB) of the rest of the mixture."""
    n = mixture.shape[-1]
    return {k: v + _envelope(n, rate, -30, -3, rng) * (mixture - v) for k, v in refs.items()}


def _noisy_mask(mixture: np.ndarray, refs: dict[str, np.ndarray], rate: int, rng: np.random.Generator):
    """The references' ratio masks raised to a random power and jittered, on the mixture ("musical noise")."""
    from scipy.signal import istft, stft

    n, nper = mixture.shape[-1], 2048
    spec = stft(mixture, nperseg=nper)[2]
    mags = {k: np.abs(stft(v, nperseg=nper)[2]) for k, v in refs.items()}
    total = sum(mags.values()) + 1e-8
    out = {}
    for k, mag in mags.items():
        mask = (mag / total) ** rng.uniform(0.5, 2.0)
        mask = np.clip(mask + rng.normal(0, rng.uniform(0.05, 0.4), mask.shape), 0, 1)
        estimate = istft(spec * mask, nperseg=nper)[1][:, :n]
        out[k] = np.pad(estimate, ((0, 0), (0, n - estimate.shape[-1])))
    return out


def _dropout(mixture: np.ndarray, refs: dict[str, np.ndarray], rate: int, rng: np.random.Generator):
    """Stems muted, or replaced by the mixture at a low level, over random stretches of 1-8 s."""
    n = mixture.shape[-1]
    out = {}
    for k, v in refs.items():
        estimate = v.copy()
        for _ in range(rng.integers(1, 6)):
            lo = int(rng.integers(0, max(1, n - rate)))
            hi = min(n, lo + int(rng.uniform(1, 8) * rate))
            estimate[:, lo:hi] = 0 if rng.random() < 0.5 else mixture[:, lo:hi] * rng.uniform(0.1, 0.7)
        out[k] = estimate
    return out


def _mislabelled(mixture: np.ndarray, refs: dict[str, np.ndarray], rate: int, rng: np.random.Generator):
    """Stems whose names are shuffled (none keeps its own), plus a little leak."""
    names = list(refs)
    order = list(rng.permutation(names))
    while len(names) > 1 and any(a == b for a, b in zip(order, names, strict=True)):
        order = list(rng.permutation(names))
    return {k: refs[o] + 0.1 * (mixture - refs[o]) for k, o in zip(names, order, strict=True)}


def _two_stem(mixture: np.ndarray, refs: dict[str, np.ndarray], rate: int, rng: np.random.Generator):
    """A karaoke split of songs: vocals with a varying leak (-30..0 dB) of the rest, and no_vocals = the mixture
    minus them (none for tracks without vocals)."""
    if "vocals" not in refs:
        return {}
    vocals = refs["vocals"] + _envelope(mixture.shape[-1], rate, -30, 0, rng) * (mixture - refs["vocals"])
    vocals *= rng.uniform(0.6, 1.0)
    return {"vocals": vocals, "no_vocals": mixture - vocals}


DEGRADATIONS = {
    "leak": _leak,
    "noisy-mask": _noisy_mask,
    "dropout": _dropout,
    "mislabelled": _mislabelled,
    "two-stem": _two_stem,
}  # separations made worse on purpose from the references, so that the training data spans every SDR


def load_examples(
    tracks: Path, separations: Path, names: list[str], cache: Path, degrade: bool, seed: int = 0
) -> list[Example]:
    """Every separator's stems of the named tracks (and degraded ones if ``degrade``), features cached per track
    and separator in ``cache/<track>/<separator>.npz``."""
    out: list[Example] = []
    for track in names:
        folder = cache / track
        folder.mkdir(parents=True, exist_ok=True)
        for separator in sorted(p.name for p in separations.iterdir() if (p / track).is_dir()):
            path = folder / f"{separator}.npz"
            if not path.exists():
                mixture, refs, rate = references(tracks / track)
                stems = {p.stem: _read(p)[0] for p in sorted((separations / separator / track).glob("*.wav"))}
                _save(path, examples_of(track, separator, mixture, stems, refs, rate))
            out += _unpack(np.load(path, allow_pickle=True))
        if degrade:
            for i, (kind, degrade_with) in enumerate(DEGRADATIONS.items()):
                path = folder / f"degraded-{kind}.npz"
                if not path.exists():
                    mixture, refs, rate = references(tracks / track)
                    rng = np.random.default_rng([seed, zlib.crc32(track.encode()), i])  # any split, same draws
                    stems = degrade_with(mixture, refs, rate, rng)
                    _save(path, examples_of(track, kind, mixture, stems, refs, rate) if stems else [])
                out += _unpack(np.load(path, allow_pickle=True))
        print(f"{track}: {sum(e.track == track for e in out)} stem estimates", flush=True)
    return out


def _save(path: Path, examples: list[Example]) -> None:
    np.savez(path, examples=np.array([vars(e) for e in examples], dtype=object))


def _unpack(data) -> list[Example]:
    return [Example(**d) for d in data["examples"]]


def predict(model: QualityEstimator, example: Example) -> tuple[np.ndarray, np.ndarray, float]:
    """Per-window SDR and silent-source probability of one example, and the whole-track SDR they give."""
    sdr, silent_p = predict_windows(model, example.features, example.stem)
    return sdr, silent_p, track_sdr_from_windows(sdr, silent_p, example.energy)


def evaluate(model: QualityEstimator, examples: list[Example]) -> dict[str, float]:
    """Spearman and MAE of the whole-track prediction (stems whose source is there), window MAE, and the silent
    windows' detection accuracy."""
    model.eval()
    true, pred, window_err, silent_ok = [], [], [], []
    for ex in examples:
        sdr, silent_p, whole = predict(model, ex)
        if np.isfinite(ex.track_sdr):
            true.append(ex.track_sdr)
            pred.append(whole)
        keep = ~ex.silent
        window_err += list(np.abs(sdr[keep] - np.clip(ex.sdr[keep], *SDR_RANGE)))
        silent_ok += list((silent_p > 0.5) == ex.silent)
    true_a, pred_a = np.asarray(true), np.nan_to_num(np.asarray(pred), nan=-30.0)
    return {
        "track_spearman": float(spearmanr(true_a, pred_a)[0]) if len(true) > 2 else float("nan"),
        "track_mae_db": float(np.mean(np.abs(true_a - pred_a))) if len(true) else float("nan"),
        "window_mae_db": float(np.mean(window_err)) if window_err else float("nan"),
        "silent_accuracy": float(np.mean(silent_ok)) if silent_ok else float("nan"),
    }


def _batch(examples: list[Example], rng: np.random.Generator, size: int) -> tuple[torch.Tensor, ...]:
    feats, classes, sdr, silent = [], [], [], []
    for i in rng.integers(0, len(examples), size):
        ex = examples[i]
        w = len(ex.features)
        crop = min(w, CROP)
        lo = int(rng.integers(0, w - crop + 1))
        pad = CROP - crop
        feats.append(np.pad(ex.features[lo : lo + crop], ((0, pad), (0, 0)), mode="edge"))
        classes.append(class_vector(ex.stem))
        sdr.append(np.pad(np.clip(ex.sdr[lo : lo + crop], *SDR_RANGE), (0, pad), mode="edge"))
        silent.append(np.pad(ex.silent[lo : lo + crop], (0, pad), mode="edge"))
    return tuple(torch.from_numpy(np.stack(a).astype(np.float32)) for a in (feats, classes, sdr, silent))


def train(
    train_set: list[Example],
    valid_set: list[Example],
    steps: int,
    out: Path,
    seed: int = 0,
    feature_noise: float = 0.05,
    weight_decay: float = 1e-2,
) -> dict[str, object]:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = QualityEstimator()
    optim = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=weight_decay)
    warmup = max(1, steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optim, lambda i: min(1.0, (i + 1) / warmup) * 0.5 * (1 + np.cos(np.pi * min(1.0, i / steps)))
    )
    best: tuple[float, dict[str, float], int] = (-np.inf, {}, 0)
    curve = []
    t0 = time.time()
    for step in range(1, steps + 1):
        model.train()
        feats, classes, sdr, silent = _batch(train_set, rng, 64)
        feats = feats + feature_noise * torch.randn_like(feats)  # the features of real songs vary more than ours
        pred, logit = model(feats, classes)
        present = 1 - silent
        regression = (torch.nn.functional.huber_loss(pred, sdr, reduction="none", delta=3.0) * present).sum()
        loss = regression / present.sum().clamp(min=1) + torch.nn.functional.binary_cross_entropy_with_logits(
            logit, silent
        )
        optim.zero_grad()
        loss.backward()
        optim.step()
        schedule.step()
        if step % 250 == 0 or step == steps:
            scores = evaluate(model, valid_set)
            curve.append({"step": step, "loss": round(loss.item(), 4), **{k: round(v, 4) for k, v in scores.items()}})
            print(json.dumps(curve[-1]), flush=True)
            goal = float(np.nan_to_num(scores["track_spearman"]) - 0.05 * np.nan_to_num(scores["track_mae_db"]))
            if goal > best[0]:
                best = (goal, scores, step)
                from safetensors.torch import save_file

                save_file(model.state_dict(), str(out / "quality-estimator.safetensors"))
    return {"best_step": best[2], "valid": best[1], "curve": curve, "seconds": round(time.time() - t0, 1)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tracks", type=Path, required=True)
    parser.add_argument("--separations", type=Path, required=True)
    parser.add_argument("--train", required=True, help="comma-separated track names (prefix* for all with it)")
    parser.add_argument("--valid", required=True)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    available = sorted(p.name for p in args.tracks.iterdir() if (p / "mixture.wav").exists())

    def expand(spec: str) -> list[str]:
        names: list[str] = []
        for item in spec.split(","):
            names += [t for t in available if t.startswith(item[:-1])] if item.endswith("*") else [item]
        return names

    train_names, valid_names = expand(args.train), expand(args.valid)
    assert not set(train_names) & set(valid_names), "a track is in both splits"
    args.out.mkdir(parents=True, exist_ok=True)
    cache = args.out / "features"
    train_set = load_examples(args.tracks, args.separations, train_names, cache, degrade=True)
    valid_set = load_examples(args.tracks, args.separations, valid_names, cache, degrade=False)
    print(f"{len(train_set)} training and {len(valid_set)} validation stem estimates", flush=True)
    result = train(train_set, valid_set, args.steps, args.out)
    info = {
        "train_tracks": train_names,
        "valid_tracks": valid_names,
        "separators": sorted({e.separator for e in train_set}),
        "stem_classes": list(STEM_CLASSES),
        "train_estimates": len(train_set),
        "valid_estimates": len(valid_set),
        "steps": args.steps,
        **result,
    }
    (args.out / "training.json").write_text(json.dumps(info, indent=2))


if __name__ == "__main__":
    main()
