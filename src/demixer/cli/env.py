"""``demixer env``: versions, devices, FFmpeg and the model cache, for bug reports."""

from __future__ import annotations

import argparse
import platform
import shutil
import subprocess
import sys


def run(args: argparse.Namespace) -> int:
    import av
    import numpy
    import scipy
    import soundfile
    import soxr
    import torch

    from ..devices import available_devices, cpu_features, native_bf16, resolve_device
    from ..pretrained import cache_dir, offline
    from ..version import __version__

    ffmpeg = shutil.which("ffmpeg")
    ffmpeg_version = "not found (only needed by some tools; decoding uses PyAV's bundled FFmpeg)"
    if ffmpeg:
        try:
            ffmpeg_version = subprocess.run(
                [ffmpeg, "-version"], capture_output=True, text=True, timeout=10
            ).stdout.splitlines()[0]
        except Exception as exc:  # pragma: no cover
            ffmpeg_version = f"{ffmpeg} (version unknown: {exc})"
    lines = [
        ("demixer", __version__),
        ("python", f"{platform.python_version()} ({sys.executable})"),
        ("platform", platform.platform()),
        ("torch", f"{torch.__version__} (threads {torch.get_num_threads()})"),
        ("numpy", numpy.__version__),
        ("scipy", scipy.__version__),
        ("soundfile", f"{soundfile.__version__} (libsndfile {soundfile.__libsndfile_version__})"),
        ("soxr", soxr.__version__),
        ("av", f"{av.__version__} (FFmpeg libraries {'.'.join(map(str, av.library_versions.get('libavcodec', ())))})"),
        ("ffmpeg", ffmpeg_version),
        ("devices", ", ".join(available_devices()) + f" (auto -> {resolve_device('auto')})"),
        ("cuda", torch.version.cuda or "not built with CUDA"),
        (
            "cpu features",
            cpu_line(cpu_features(), native_bf16(torch.device("cpu")), torch.backends.cpu.get_cpu_capability()),
        ),
        ("model cache", f"{cache_dir()} (DEMIXER_CACHE_DIR overrides)"),
        ("offline", "yes (DEMIXER_OFFLINE)" if offline() else "no"),
    ]
    width = max(len(k) for k, _ in lines)
    for key, value in lines:
        print(f"{key:<{width}}  {value}")
    return 0


def cpu_line(features: dict[str, bool], bf16: bool, capability: str) -> str:
    """The CPU's fast-kernel flags as ``--fast`` uses them, e.g. ``AVX-512 yes, VNNI yes, AMX no``."""
    yes = {True: "yes", False: "no"}
    return (
        f"AVX-512 {yes[features['avx512']]}, VNNI {yes[features['vnni'] or features['avx_vnni']]}, "
        f"AVX512-BF16 {yes[features['avx512_bf16']]}, AMX {yes[features['amx']]} "
        f"(torch kernels: {capability}; --fast int8 layers: yes, bf16: {yes[bf16]})"
    )


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("env", help="print versions, devices, FFmpeg and the model cache dir")
    p.set_defaults(run=run)
