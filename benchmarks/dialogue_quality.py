"""Dialogue separation (speech / music / effects) on held-out voices, music and effects, against the denoiser.

    python benchmarks/dialogue_quality.py --voices VOICES [-n demixer-dialogue -n CHECKPOINT]
        [--baseline demixer-denoise --baseline deepfilternet3] [--items 40 --seconds 6 --seed 1] [--json out.json]

The test set is mixed by the training code's own mixer (``DialogueMixDataset``, validation mode: no equaliser,
fixed seed) from material no model here trained or was validated on (``configs/demixer-dialogue.yaml``):

- voices: VCTK p286, p240, p260, Valentini p287 (../shared/data) and the KLettres voices en_GB, tn and uk
  (``VOICES``: ``demixer data join /usr/share/klettres --out VOICES --seconds 8 --seed 0``);
- music: the three songs of ../shared/data/mixtures_only and the MUSDB excerpt (tests only);
- effects: sms-tools' rain and the freedesktop sound theme's recorded events (Debian ``sound-theme-freedesktop``).

Four scenes, ``--items`` mixtures each, at 16 kHz mono: ``music`` (music under the speech at -15..0 dB, no
effects: music-under-speech, where the denoiser is the baseline to beat), ``effects`` (effects at -15..0 dB, no
music), ``both`` (music and effects, each -20..-5 dB) and ``song`` (a song alone, its singing included, no
speech). Each stem present in a mixture is scored by SI-SDRi against its true source; a baseline's ``speech``
output is scored the same way. Where there is no speech, ``speech leak`` is the level of the speech output
relative to the input (dB; lower is better: sung vocals a model takes for speech show up here). Mean and
median per scene and stem.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
SHARED = ROOT.parent / "shared" / "data"
RATE = 16000
SCENES = {
    "music": dict(music_db=(-15.0, 0.0), effects_db=(-15.0, 0.0), speech_p=1.0, music_p=1.0, effects_p=0.0),
    "effects": dict(music_db=(-15.0, 0.0), effects_db=(-15.0, 0.0), speech_p=1.0, music_p=0.0, effects_p=1.0),
    "both": dict(music_db=(-20.0, -5.0), effects_db=(-20.0, -5.0), speech_p=1.0, music_p=1.0, effects_p=1.0),
    "song": dict(music_db=(0.0, 0.0), effects_db=(0.0, 0.0), speech_p=0.0, music_p=1.0, effects_p=0.0),
}


def test_set(voices: Path, items: int, seconds: float, seed: int) -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
    from demixer.data.dialogue import DialogueBalance, DialogueMixDataset

    speech = [
        SHARED / "speech/vctk",
        SHARED / "speech/vctk_rtvc",
        SHARED / "denoising_pairs/valentini_p287/clean",
        *(voices / v for v in ("en_GB", "tn", "uk")),
    ]
    music = [SHARED / "mixtures_only", SHARED / "music/valid"]
    effects = [SHARED / "noise/sms_tools/rain.flac", Path("/usr/share/sounds/freedesktop/stereo")]
    out = {}
    for scene, balance in SCENES.items():
        ds = DialogueMixDataset(
            speech,
            music,
            effects,
            sample_rate=RATE,
            segment=seconds,
            items=items,
            balance=DialogueBalance(**balance),
            seed=seed,
            validation=True,
        )
        out[scene] = [(mix.numpy()[0], src.numpy()[:, 0]) for mix, src in (ds[i] for i in range(items))]
    return out


def score(name: str, scenes: dict, only_speech: bool) -> dict[str, dict[str, list[float]]]:
    from demixer.evaluation.metrics import si_sdr_i
    from demixer.separation import Separator

    sep = Separator(name, progress=False)
    wanted = ("speech",) if only_speech else ("speech", "music", "effects")
    missing = [s for s in wanted if s not in sep.sources]
    if missing:
        raise SystemExit(f"{name} has no {', '.join(missing)} output (it gives {', '.join(sep.sources)})")
    results: dict[str, dict[str, list[float]]] = {}
    for scene, items in scenes.items():
        per_stem: dict[str, list[float]] = {s: [] for s in wanted}
        for mix, sources in items:
            stems = sep.separate_tensor(torch.from_numpy(mix)[None], RATE)
            alone = sum(bool(np.any(x)) for x in sources) == 1  # the mixture is that source: no SI-SDRi to score
            for k, stem in enumerate(("speech", "music", "effects")):
                if stem in wanted and np.any(sources[k]) and not alone:
                    estimate = stems[stem].numpy()[0]
                    per_stem[stem].append(si_sdr_i(reference=sources[k], estimate=estimate, mixture=mix))
            if not np.any(sources[0]):  # no speech at all: how loud is what the speech output holds anyway
                leak = np.mean(stems["speech"].numpy() ** 2) / (np.mean(mix**2) + 1e-12)
                per_stem.setdefault("speech_leak_db", []).append(float(10 * np.log10(leak + 1e-12)))
        results[scene] = per_stem
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--voices", type=Path, required=True, help="KLettres voices joined (one folder per voice)")
    ap.add_argument("-n", "--model", action="append", help="dialogue model(s) (default: demixer-dialogue)")
    ap.add_argument("--baseline", action="append", help="speech-enhancement baselines (default: demixer-denoise)")
    ap.add_argument("--items", type=int, default=40)
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(1)
    scenes = test_set(args.voices, args.items, args.seconds, args.seed)
    runs = [(m, False) for m in args.model or ["demixer-dialogue"]]
    runs += [(b, True) for b in args.baseline or ["demixer-denoise"]]
    table = {name: score(name, scenes, only) for name, only in runs}
    print(f"SI-SDRi (dB), {args.items} mixtures per scene, {args.seconds:g} s, 16 kHz; mean / median (estimates)")
    print(f"{'model':<34} {'scene':<8} {'speech':>20} {'music':>20} {'effects':>20} {'speech leak':>20}")
    for name, scenes_scores in table.items():
        for scene, per_stem in scenes_scores.items():
            cells = []
            for stem in ("speech", "music", "effects", "speech_leak_db"):
                v = per_stem.get(stem, [])
                cells.append(f"{np.mean(v):6.2f} / {np.median(v):6.2f} ({len(v):2d})" if v else "-")
            print(f"{Path(name).stem:<34} {scene:<8} " + " ".join(f"{c:>20}" for c in cells))
    if args.json:
        summary = {
            name: {
                scene: {
                    s: {"mean": float(np.mean(v)), "median": float(np.median(v)), "n": len(v)} for s, v in d.items()
                }
                for scene, d in sc.items()
            }
            for name, sc in table.items()
        }
        args.json.write_text(json.dumps({"items": args.items, "seconds": args.seconds, "results": summary}, indent=1))


if __name__ == "__main__":
    main()
