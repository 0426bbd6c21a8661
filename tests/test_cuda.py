"""Every default model on a CUDA GPU gives what it gives on the CPU. Runs only where torch sees a GPU (CI has
none; `scripts/device/run_2spk.sh` runs it on a lent machine): a model that builds a tensor on the CPU inside
its forward pass fails here with a device mismatch, as Conv-TasNet's mixture gains once did."""

from __future__ import annotations

import math

import pytest
import torch

import demixer
from demixer.cli.separate import example_path

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.parametrize(
    "job",
    [{"task": "music"}, {"two_stems": "vocals"}, {"task": "speakers"}, {"task": "denoise"}],
    ids=["music", "karaoke", "speakers", "denoise"],
)
def test_default_model_on_cuda_matches_cpu(job):
    out = {dev: demixer.Separator(device=dev, **job).separate_file(example_path())[0] for dev in ("cuda", "cpu")}
    assert sorted(out["cuda"]) == sorted(out["cpu"])
    for stem, ref in out["cpu"].items():
        err = (out["cuda"][stem].cpu().float() - ref.float()).pow(2).sum()
        snr = 10 * math.log10(float(ref.float().pow(2).sum()) / max(float(err), 1e-20))
        assert snr > 40, f"{stem}: CUDA and CPU outputs differ (SNR {snr:.1f} dB)"
