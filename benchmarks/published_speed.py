"""Published architectures: demixer's engine vs the reference package, same weights, same 60 s stereo
input; time (RTF) and peak RSS side by side, each side in a fresh process.

    python benchmarks/published_speed.py --arch umx         # Open-Unmix umxhq config vs openunmix 1.3.0
    python benchmarks/published_speed.py --arch htdemucs    # published htdemucs config vs demucs 4.1.0
    python benchmarks/published_speed.py --arch bs          # BS-RoFormer viperx-317 config vs bs-roformer 0.3.10
    python benchmarks/published_speed.py --arch mel         # Mel-RoFormer Kim config vs bs-roformer 0.3.10
    python benchmarks/published_speed.py --arch sepformer   # SepFormer wsj02mix config vs speechbrain 1.1.2
    python benchmarks/published_speed.py --arch convtasnet  # Asteroid's Libri2Mix Conv-TasNet config vs asteroid 0.7.0
    python benchmarks/published_speed.py --arch dprnn       # Asteroid's WHAM! DPRNN-TasNet config vs asteroid 0.7.0
    options: --seconds 60 --threads 2 --repeat N [--depth N: RoFormers only, a quicker model]

Music models take 60 s of stereo noise at 44.1 kHz; speech models take 60 s of two real talkers
(utterances from ../shared/data/speech, one voice per side, summed) at 8 kHz mono.

How each reference runs, as its users run it:
- umx: ``openunmix.model.Separator`` (niter=1, 300-frame Wiener windows) on the whole track, as
  ``openunmix.predict.separate`` does;
- htdemucs: ``demucs.apply.apply_model(split=True, overlap=0.25, shifts=0)`` (``--shifts-ref 1`` for the
  demucs CLI's default);
- RoFormers: Music-Source-Separation-Training's overlap-add demix (8 s chunks, 2 overlaps);
- sepformer: ``SepformerSeparation.separate_batch`` on the whole recording, as ``separate_file`` runs it;
- convtasnet, dprnn: the Asteroid model called on the whole recording (``model(wav)``, what ``separate`` does).
demixer runs ``Separator(model=...).separate_tensor`` with its defaults (overlap 0.25; umx whole-track), its
RoFormers loaded as demixer loads checkpoints: weights memory-mapped from the file, the per-band mask MLPs
paged out of the process between chunks (``demixer.models.mapped``; the page cache keeps them, and is not
counted in a process's RSS).

The weights are random (seed 0), made once by the parent, saved as safetensors and loaded by both
sides the same way. Equality is checked where the two runs compute the same thing: Open-Unmix on the
whole track (both process it in one piece), the others on one chunk through both models (their
overlap-add schemes weigh chunk edges differently, so whole tracks differ by design).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
import types
import warnings
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.modules.setdefault("torchaudio", types.ModuleType("torchaudio"))  # openunmix imports it by name only

VIPERX_BANDS = (2,) * 24 + (4,) * 12 + (12,) * 8 + (24,) * 8 + (48,) * 8 + (128, 129)
ROFORMER = {
    "bs": dict(dim=512, depth=12, time_transformer_depth=1, freq_transformer_depth=1, dim_head=64, heads=8),
    "mel": dict(dim=384, depth=6, time_transformer_depth=1, freq_transformer_depth=1, dim_head=64, heads=8),
}
UMX_TARGETS = ("vocals", "drums", "bass", "other")
HTDEMUCS = dict(
    channels=48,
    growth=2,
    nfft=4096,
    depth=4,
    dconv_mode=3,
    dconv_depth=2,
    dconv_comp=8,
    dconv_init=1e-3,
    bottom_channels=512,
    t_layers=5,
    t_heads=8,
    t_hidden_scale=4.0,
    t_layer_scale=True,
    t_gelu=True,
    segment=Fraction(39, 5),
    samplerate=44100,
    freq_emb=0.2,
    norm_starts=4,
    norm_groups=4,
)
HT_SOURCES = ["drums", "bass", "other", "vocals"]
SPEECH = ("sepformer", "convtasnet", "dprnn")
SAMPLE_RATE = {"sepformer": 8000, "convtasnet": 8000, "dprnn": 8000}
ASTEROID_NAMES = {"convtasnet": "ConvTasNet", "dprnn": "DPRNNTasNet"}


class SpeechBrainSepformer(torch.nn.Module):
    """SpeechBrain's three SepFormer modules, as its published ``hyperparams.yaml`` builds them; ``forward`` is
    ``SepformerSeparation.separate_batch``: ``[B, T]`` -> ``[B, T, speakers]``."""

    def __init__(self) -> None:
        super().__init__()
        from speechbrain.lobes.models.dual_path import Decoder, Dual_Path_Model, Encoder, SBTransformerBlock

        def stack():
            return SBTransformerBlock(8, 256, 8, d_ffn=1024, dropout=0, use_positional_encoding=True, norm_before=True)

        self.encoder = Encoder(kernel_size=16, out_channels=256)
        self.masknet = Dual_Path_Model(256, 256, stack(), stack(), num_layers=2, K=250, num_spks=2, norm="ln",
                                       linear_layer_after_inter_intra=False, skip_around_intra=True)  # fmt: skip
        self.decoder = Decoder(in_channels=256, out_channels=1, kernel_size=16, stride=8, bias=False)

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        w = self.encoder(mix)
        h = torch.stack([w] * 2) * self.masknet(w)
        est = torch.cat([self.decoder(h[i]).unsqueeze(-1) for i in range(2)], dim=-1)
        return torch.nn.functional.pad(est, (0, 0, 0, max(0, mix.shape[1] - est.shape[1])))[:, : mix.shape[1]]


# -- the reference models and how they are run -------------------------------------------------------


def reference(arch: str, depth: int | None) -> torch.nn.Module:
    torch.manual_seed(0)
    if arch == "sepformer":
        return SpeechBrainSepformer()
    if arch == "convtasnet":
        from asteroid.models import ConvTasNet

        return ConvTasNet(n_src=2, mask_act="relu", sample_rate=8000)  # JorisCos/ConvTasNet_Libri2Mix_sepclean_8k
    if arch == "dprnn":
        from asteroid.models import DPRNNTasNet

        # mpariente/DPRNNTasNet-ks2_WHAM_sepclean: 64 filters of 2 samples, stride 1, chunks of 250 every 125
        return DPRNNTasNet(
            n_src=2, n_filters=64, kernel_size=2, stride=1, chunk_size=250, hop_size=125, sample_rate=8000
        )
    if arch == "umx":
        from openunmix.model import OpenUnmix, Separator

        nets = {t: OpenUnmix(nb_bins=2049, nb_channels=2, hidden_size=512, max_bin=1487) for t in UMX_TARGETS}
        for net in nets.values():  # trained-looking normalisation statistics
            for bn in (net.bn1, net.bn2, net.bn3):
                bn.running_var.uniform_(0.5, 2.0)
        return Separator(nets, niter=1, n_fft=4096, n_hop=1024, nb_channels=2, sample_rate=44100.0, wiener_win_len=300)
    if arch == "htdemucs":
        from demucs.htdemucs import HTDemucs

        return HTDemucs(sources=HT_SOURCES, **HTDEMUCS)
    import bs_roformer

    cfg = dict(ROFORMER[arch], depth=depth or ROFORMER[arch]["depth"])
    if arch == "bs":
        return bs_roformer.BSRoformer(
            **cfg, stereo=True, num_stems=1, freqs_per_bands=VIPERX_BANDS, stft_hop_length=441, mask_estimator_depth=2
        )
    return bs_roformer.MelBandRoformer(
        **cfg,
        stereo=True,
        num_stems=1,
        num_bands=60,
        stft_hop_length=441,
        mask_estimator_depth=2,
        attn_dropout=0.0,
        ff_dropout=0.0,
    )


def ours(arch: str, depth: int | None) -> torch.nn.Module:
    torch.manual_seed(0)
    if arch == "sepformer":
        from demixer.models.sepformer import SepFormer

        return SepFormer()
    if arch in ("convtasnet", "dprnn"):
        from demixer.models.asteroid import model_from_package

        package = {"model_name": ASTEROID_NAMES[arch], "model_args": reference(arch, None).get_model_args()}
        return model_from_package(package, 8000, ("speaker1", "speaker2"))
    if arch == "umx":
        from demixer.models.open_unmix import OpenUnmix, OpenUnmixConfig

        return OpenUnmix(OpenUnmixConfig(sources=UMX_TARGETS))
    if arch == "htdemucs":
        from demixer.models.htdemucs import HTDemucs, HTDemucsConfig

        return HTDemucs(HTDemucsConfig.from_demucs(HT_SOURCES, HTDEMUCS))
    from demixer.models.roformer import BSRoformer, MelRoformer, RoformerConfig

    kw = dict(ROFORMER[arch], depth=depth or ROFORMER[arch]["depth"], hop_length=441, mask_estimator_depth=2)
    return (
        BSRoformer(RoformerConfig(**kw, freqs_per_bands=VIPERX_BANDS))
        if arch == "bs"
        else MelRoformer(RoformerConfig(**kw, num_bands=60))
    )


def to_ours(arch: str, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The reference's state dict under our module names."""
    if arch == "umx":
        return {k.replace("target_models.", "targets."): v for k, v in state.items() if k.startswith("target_models.")}
    if arch == "sepformer":
        from demixer.models.speechbrain import state_dict as speechbrain_state_dict

        parts: dict[str, dict[str, torch.Tensor]] = {"encoder": {}, "masknet": {}, "decoder": {}}
        for key, value in state.items():
            part, rest = key.split(".", 1)
            parts[part][rest] = value
        return speechbrain_state_dict(parts)
    if arch in ("convtasnet", "dprnn"):
        from demixer.models.asteroid import state_dict

        return state_dict(ASTEROID_NAMES[arch], state)
    return state


def roformer_demix(model: torch.nn.Module, mix: torch.Tensor, chunk: int = 352800, overlap: int = 2) -> torch.Tensor:
    """Music-Source-Separation-Training's demix: chunks of `chunk` samples every chunk/overlap, linear fades."""
    step = chunk // overlap
    fade = chunk // 10
    border = chunk - step
    length = mix.shape[-1]
    mix = torch.nn.functional.pad(mix[None], (border, border), mode="reflect")[0] if length > 2 * border else mix
    window = torch.ones(chunk)
    window[:fade] = torch.linspace(0, 1, fade)
    window[-fade:] = torch.linspace(1, 0, fade)
    result = torch.zeros_like(mix)
    counter = torch.zeros(mix.shape[-1])
    with torch.no_grad():
        for i in range(0, mix.shape[-1], step):
            part = mix[:, i : i + chunk]
            n = part.shape[-1]
            if n < chunk:
                part = torch.nn.functional.pad(
                    part[None], (0, chunk - n), mode="reflect" if n > chunk // 2 + 1 else "constant"
                )[0]
            out = model(part[None])[0][..., :n]
            w = window[:n].clone()
            if i == 0:
                w[:fade] = 1
            if i + step >= mix.shape[-1]:
                w[-fade:] = 1
            result[:, i : i + n] += out * w
            counter[i : i + n] += w
    est = result / counter.clamp(min=1e-8)
    return est[:, border : border + length] if length > 2 * border else est


def run_reference(arch: str, model: torch.nn.Module, mix: torch.Tensor, shifts: int) -> torch.Tensor:
    with torch.no_grad():
        if arch == "sepformer":
            return model(mix).permute(2, 0, 1)  # [speakers, 1, T]
        if arch in ("convtasnet", "dprnn"):
            return model(mix[None])[0][:, None]
        if arch == "umx":
            return model(mix[None])[0]
        if arch == "htdemucs":
            from demucs.apply import apply_model

            return apply_model(model, mix[None], shifts=shifts, split=True, overlap=0.25, progress=False)[0]
    return roformer_demix(model, mix)


# -- one side in a fresh process ---------------------------------------------------------------------


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss, not inherited from the parent across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def mixture(arch: str, seconds: float) -> torch.Tensor:
    if arch in SPEECH:
        return torch.from_numpy(two_talkers(SAMPLE_RATE[arch], seconds))[None]
    return torch.from_numpy(
        np.random.default_rng(1).standard_normal((2, int(seconds * 44100))).astype(np.float32) * 0.1
    )


def two_talkers(sr: int, seconds: float) -> np.ndarray:
    """``seconds`` of two real voices talking at once: the shared utterances, alternately given to either side."""
    import soundfile as sf
    import soxr

    files = sorted((ROOT.parent / "shared" / "data" / "speech").rglob("*.flac"))
    sides: list[list[np.ndarray]] = [[], []]
    for i, path in enumerate(files):
        x, rate = sf.read(path, dtype="float32", always_2d=True)
        x = soxr.resample(x.mean(axis=1), rate, sr).astype(np.float32)
        sides[i % 2].append(x / (np.abs(x).max() + 1e-9) * 0.3)
    n = int(seconds * sr)
    return (np.resize(np.concatenate(sides[0]), n) + np.resize(np.concatenate(sides[1]), n)).astype(np.float32)


def run_side(args) -> None:
    from safetensors.torch import load_file

    warnings.simplefilter("ignore")
    torch.set_num_threads(args.threads)
    state = load_file(args.weights)
    if args.side == "ref":
        model = reference(args.arch, args.depth)
        model.load_state_dict(state, assign=True, strict=False)  # no second copy of the weights
    else:
        model = ours(args.arch, args.depth)
        from demixer.models.mapped import load_mapped

        # as demixer loads its checkpoints: RoFormer weights mapped from the file, mask MLPs paged in while they run
        if not (model.streamed_modules() and load_mapped(model, args.weights)):
            model.load_state_dict(to_ours(args.arch, state), assign=True)
    del state
    model.eval()
    mix = mixture(args.arch, args.seconds)
    rate = SAMPLE_RATE.get(args.arch, 44100)
    start = time.perf_counter()
    if args.side == "ref":
        out = run_reference(args.arch, model, mix, args.shifts_ref).numpy()
    else:
        from demixer.separation import Separator

        stems = Separator(model=model).separate_tensor(mix, rate)
        out = np.stack([stems[s].numpy() for s in model.sources])
    seconds = time.perf_counter() - start
    if args.save:
        np.save(args.save, out)
    print(json.dumps({"seconds": seconds, "rtf": seconds / args.seconds, "peak_mb": peak_rss_mb()}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", choices=("umx", "htdemucs", "bs", "mel", *SPEECH), default="umx")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--depth", type=int, default=None, help="RoFormers: fewer layers than published (quicker)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=1, help="alternate the two sides this many times (median ratios)")
    ap.add_argument("--shifts-ref", type=int, default=0, help="htdemucs: the reference's shifts (its CLI default is 1)")
    ap.add_argument("--side", choices=("ours", "ref"), help=argparse.SUPPRESS)
    ap.add_argument("--weights", help=argparse.SUPPRESS)
    ap.add_argument("--save", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.side:
        run_side(args)
        return
    warnings.simplefilter("ignore")
    from safetensors.torch import save_file

    torch.set_num_threads(args.threads)
    ref = reference(args.arch, args.depth).eval()
    model = ours(args.arch, args.depth).eval()
    model.load_state_dict(to_ours(args.arch, ref.state_dict()))
    tmp = Path(tempfile.mkdtemp())
    weights = tmp / "weights.safetensors"
    save_file({k: v.clone().contiguous() for k, v in ref.state_dict().items()}, str(weights))
    where = "whole track"
    if args.arch in SPEECH:  # one 10 s chunk through both models (demixer chunks, the references do not)
        chunk = mixture(args.arch, 10.0)
        with torch.no_grad():
            a = run_reference(args.arch, ref, chunk, 0)
            if hasattr(model, "config"):
                model.config.mixture_gain = False  # the raw network output, as the reference gives it
            b = model(chunk[None])[0]
        diff = float((a - b).abs().max())
        where = "one 10 s chunk"
    elif args.arch != "umx":  # one chunk through both models
        chunk = torch.randn(1, 2, int(float(HTDEMUCS["segment"]) * 44100) if args.arch == "htdemucs" else 352800) * 0.1
        with torch.no_grad():
            a, b = ref(chunk), model(chunk)
        diff = float((a.reshape(b.shape) - b).abs().max())
        where = f"one {chunk.shape[-1] / 44100:.1f} s chunk"
    params = sum(p.numel() for p in ref.parameters())
    del ref, model
    what = "of two talkers at 8 kHz" if args.arch in SPEECH else "stereo"
    print(f"{args.arch}: {params / 1e6:.1f} M parameters, {args.seconds:.0f} s {what}, {args.threads} threads")
    ratios = []
    for _trial in range(args.repeat):  # alternating sides: this machine's speed drifts, the pairs share the drift
        results = {}
        for side in ("ref", "ours"):
            cmd = [
                sys.executable,
                __file__,
                "--arch",
                args.arch,
                "--seconds",
                str(args.seconds),
                "--threads",
                str(args.threads),
                "--shifts-ref",
                str(args.shifts_ref),
                "--side",
                side,
                "--weights",
                str(weights),
                "--save",
                str(tmp / f"{side}.npy"),
            ]
            if args.depth:
                cmd += ["--depth", str(args.depth)]
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode:
                sys.exit(f"{side} failed:\n{done.stderr[-3000:]}")
            results[side] = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"  {side:<4} RTF {results[side]['rtf']:.3f}  peak RSS {results[side]['peak_mb']:.0f} MB")
        if args.arch == "umx":
            diff = float(np.abs(np.load(tmp / "ref.npy") - np.load(tmp / "ours.npy")).max())
        ratios.append(
            (
                results["ref"]["seconds"] / results["ours"]["seconds"],
                results["ours"]["peak_mb"] / results["ref"]["peak_mb"],
            )
        )
        print(
            f"  speed-up {ratios[-1][0]:.2f}x, memory ratio {ratios[-1][1]:.2f}, "
            f"max |ours - reference| = {diff:.2e} ({where})"
        )
    if args.repeat > 1:
        print(
            f"  median of {args.repeat}: speed-up {np.median([r[0] for r in ratios]):.2f}x, "
            f"memory ratio {np.median([r[1] for r in ratios]):.2f}"
        )


if __name__ == "__main__":
    main()
