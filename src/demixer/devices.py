"""Device selection: "auto" picks cuda, then mps, then cpu."""

from __future__ import annotations

import torch

from .errors import OptionsError


def available_devices() -> list[str]:
    devices = ["cpu"]
    if torch.cuda.is_available():
        devices += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        devices.append("mps")
    return devices


def resolve_device(spec: str | torch.device = "auto") -> torch.device:
    """Turn ``auto``/``cpu``/``cuda``/``cuda:N``/``mps`` into a usable torch device.

    Raises:
        OptionsError: the device does not exist on this machine.
    """
    if isinstance(spec, torch.device):
        return spec
    spec = spec.strip().lower()
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if "mps" in available_devices():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise OptionsError(f"--device: unknown device {spec!r} (use auto, cpu, cuda, cuda:N or mps)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise OptionsError("--device: CUDA was asked for but no CUDA GPU is available here")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise OptionsError(f"--device: cuda:{device.index} does not exist ({torch.cuda.device_count()} GPU(s))")
    if device.type == "mps" and "mps" not in available_devices():
        raise OptionsError("--device: MPS was asked for but is not available here")
    return device


#: CPU flags (``/proc/cpuinfo`` names) that decide which fast kernels a CPU has.
CPU_FLAGS = {
    "avx2": "avx2",
    "avx512": "avx512f",
    "vnni": "avx512_vnni",  # int8 dot products (int8 Linear layers)
    "avx_vnni": "avx_vnni",
    "avx512_bf16": "avx512_bf16",  # bfloat16 dot products
    "amx": "amx_tile",
    "amx_bf16": "amx_bf16",
    "amx_int8": "amx_int8",
}


def cpu_features() -> dict[str, bool]:
    """Which of :data:`CPU_FLAGS` this CPU has (all False where ``/proc/cpuinfo`` cannot be read)."""
    flags: set[str] = set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    return {name: flag in flags for name, flag in CPU_FLAGS.items()}


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 natively (else bf16 autocast would only emulate it, slower)."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        features = cpu_features()
        return torch.backends.mkldnn.is_available() and (features["avx512_bf16"] or features["amx_bf16"])
    return False
