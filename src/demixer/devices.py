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
