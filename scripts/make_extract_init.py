"""Build the starting point of the ``demixer-extract`` run: ``demixer-denoise``'s weights, the published GE2E
speaker encoder (Resemblyzer's ``pretrained.pt``, Apache-2.0) and a speaker FiLM at zero, so the new model
starts as the shipped denoiser and learns only whose voice to keep.

    pip download --no-deps resemblyzer==0.1.4 && unzip -o Resemblyzer-0.1.4-py3-none-any.whl resemblyzer/pretrained.pt
    python scripts/make_extract_init.py resemblyzer/pretrained.pt checkpoints/extract-init.safetensors
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import torch

from demixer.models.checkpoint import load_checkpoint, save_checkpoint
from demixer.models.extraction import SpeakerDenoiser, SpeakerDenoiserConfig
from demixer.models.shipped import weights_dir
from demixer.models.voice_encoders import GE2EVoiceEncoder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("ge2e", type=Path, help="Resemblyzer's pretrained.pt")
    parser.add_argument("out", type=Path)
    parser.add_argument("--profile", action="store_true", help="condition on the enrolment's feature profile too")
    parser.add_argument("--analysis-ms", type=float, default=0.0, help="longer feature windows (a multiple of 20 ms)")
    args = parser.parse_args()
    denoiser = load_checkpoint(weights_dir() / "demixer-denoise.safetensors", mapped=False)
    fields = {k: v for k, v in vars(denoiser.config).items() if k not in ("sources", "speaker_dim", "analysis_ms")}
    ratio = int(args.analysis_ms / denoiser.config.frame_ms) if args.analysis_ms else 1
    inputs = denoiser.config.bands + denoiser.config.fine_bins * ratio
    config = SpeakerDenoiserConfig(
        **fields,
        analysis_ms=args.analysis_ms,
        profile=args.profile,
        speaker_dim=GE2EVoiceEncoder.dim + inputs * args.profile,
    )
    model = SpeakerDenoiser(config)
    weights = denoiser.state_dict()
    if ratio > 1:  # each low bin's input weights shared by the `ratio` finer bins that split it
        bands = denoiser.config.bands
        for key in ("input_norm.weight", "input_norm.bias", "gru.weight_ih_l0"):
            w = weights[key]
            fine = w[..., bands:].repeat_interleave(ratio, dim=-1)
            weights[key] = torch.cat([w[..., :bands], fine / ratio if key == "gru.weight_ih_l0" else fine], dim=-1)
    missing, unexpected = model.load_state_dict(weights, strict=False)
    assert not unexpected and all(k.startswith(("speaker_film.", "speaker_encoder.")) for k in missing), missing
    published = torch.load(args.ge2e, map_location="cpu", weights_only=True)["model_state"]
    model.speaker_encoder.load_state_dict({k: v for k, v in published.items() if k.startswith(("lstm.", "linear."))})
    sha = hashlib.sha256(args.ge2e.read_bytes()).hexdigest()
    save_checkpoint(model, args.out, extra={"ge2e_source": "resemblyzer 0.1.4 pretrained.pt", "ge2e_sha256": sha})
    print(f"{args.out}: demixer-denoise + GE2E ({sha[:12]}), speaker FiLM at zero")


if __name__ == "__main__":
    main()
