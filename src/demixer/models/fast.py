"""``--fast``: a quicker version of a model, with a measured quality cost.

A model class says what its fast mode changes in its :class:`~demixer.models.base.FastRecipe`;
:func:`make_fast` applies it:

- **int8 Linear layers.** Every ``nn.Linear`` becomes an :class:`Int8Linear`: weights quantised once,
  symmetric per output channel, and run by PyTorch's dynamic-quantised kernel (fbgemm/oneDNN: the input
  is quantised per call, products summed in int32 with AVX-512 VNNI where the CPU has it). CPU only.
  The int8 weights are derived once and cached in a safetensors file with a ``.sha256`` sidecar; the
  file is verified against it at every load and rebuilt, with a warning, when it does not match.
- **bfloat16 autocast** for the rest (convolutions, matmuls), only where the device computes bf16
  natively (:func:`demixer.devices.native_bf16`); elsewhere that step is left out.
- **a smaller chunk overlap** (the engine's default; ``--overlap`` still wins).

The exact model's output is the reference: ``benchmarks/fast_mode.py`` measures each recipe's
fidelity (SNR of fast against exact output) and, on trained weights, its SDR cost.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..devices import native_bf16
from ..files import atomic_path, sha256_of, write_text_atomic
from .base import FastRecipe, SeparationModel

log = logging.getLogger("demixer")

CACHE_SUFFIX = ".int8.safetensors"
#: The least SNR (dB) of fast output against exact output a recipe may cost; the tests hold every recipe to it.
FIDELITY_FLOOR_DB = 25.0


class Int8Linear(nn.Module):
    """An ``nn.Linear`` with int8 weights (per output channel) on PyTorch's dynamic-quantised kernel.

    Shape:
        ``forward``: ``[..., in_features]`` (any float dtype) -> ``[..., out_features]`` in the input's dtype.
    """

    def __init__(self, weight: Tensor, scale: Tensor, bias: Tensor | None) -> None:
        from torch.ao.nn.quantized.dynamic import Linear as DynamicQuantizedLinear

        super().__init__()
        out_features, in_features = weight.shape
        self.in_features, self.out_features = in_features, out_features
        with warnings.catch_warnings():  # torch 2.13 marks quantised tensors deprecated; the pinned version has them
            warnings.simplefilter("ignore", UserWarning)
            packed = torch._make_per_channel_quantized_tensor(
                weight, scale.double(), torch.zeros(out_features, dtype=torch.long), 0
            )
        self.kernel = DynamicQuantizedLinear(in_features, out_features, bias_=bias is not None, dtype=torch.qint8)
        self.kernel.set_weight_bias(packed, None if bias is None else bias.detach().float())

    def forward(self, x: Tensor) -> Tensor:
        return self.kernel(x.float()).to(x.dtype)


def quantize_weight(weight: Tensor) -> tuple[Tensor, Tensor]:
    """Symmetric int8 per output channel: ``(int8 [out, in], scale [out])`` with ``weight ~ int8 * scale``."""
    w = weight.detach().float()
    scale = w.abs().amax(dim=1).clamp(min=1e-12) / 127.0
    return torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8), scale


def _linears(model: nn.Module) -> dict[str, nn.Linear]:
    return {name: m for name, m in model.named_modules() if isinstance(m, nn.Linear)}


def fingerprint(model: nn.Module) -> str:
    """A cheap identity of the float weights the int8 cache was derived from: every Linear's name and shape,
    and a strided sample of its weights (a retrained or different checkpoint changes it)."""
    h = hashlib.sha256()
    for name, m in sorted(_linears(model).items()):
        w = m.weight.detach().reshape(-1)
        h.update(f"{name}:{tuple(m.weight.shape)};".encode())
        # the first and last values only: a few pages of a memory-mapped checkpoint, not all of it
        h.update(torch.cat([w[:256], w[-256:]]).float().contiguous().numpy().tobytes())
    return h.hexdigest()


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def read_int8_cache(path: Path, expected_fingerprint: str) -> dict[str, Tensor] | None:
    """The cached int8 weights, or None when there are none, they belong to other weights, or the file does
    not match its recorded sha256 (a corrupt or edited file: logged, and the caller rebuilds it)."""
    from safetensors import safe_open

    if not path.is_file():
        return None
    try:
        recorded = json.loads(_sidecar(path).read_text())["sha256"]
    except (OSError, ValueError, KeyError):
        log.warning("%s: no valid checksum file beside it; rebuilding the int8 weights", path)
        return None
    digest = sha256_of(path)
    if digest != recorded:
        log.warning("%s: sha256 %s does not match the recorded %s; rebuilding the int8 weights", path, digest, recorded)
        return None
    with safe_open(str(path), framework="pt") as f:
        try:
            found = json.loads((f.metadata() or {})["demixer-int8-linear-1"])["fingerprint"]
        except (KeyError, ValueError, TypeError):
            found = None
        if found != expected_fingerprint:
            return None
        return {k: f.get_tensor(k) for k in f.keys()}


def write_int8_cache(path: Path, tensors: dict[str, Tensor], model_fingerprint: str) -> str:
    """Save the int8 weights and their sha256 sidecar (both written atomically); returns the digest."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        # one metadata key: safetensors writes several in a random order, and the file must hash the same each time
        save_file(tensors, str(tmp), metadata={"demixer-int8-linear-1": json.dumps({"fingerprint": model_fingerprint})})
    digest = sha256_of(path)
    write_text_atomic(_sidecar(path), json.dumps({"sha256": digest}))
    return digest


def quantize_linears(model: nn.Module, cache: Path | None = None) -> int:
    """Replace every ``nn.Linear`` of ``model`` (in place) by an :class:`Int8Linear`; returns how many.

    With ``cache``, the int8 weights are read from that file when it holds them for these float weights
    (checksum verified), else derived and written there.
    """
    linears = _linears(model)
    if not linears:
        return 0
    tensors = None
    key = fingerprint(model) if cache is not None else ""
    if cache is not None:
        tensors = read_int8_cache(cache, key)
    if tensors is None:
        tensors = {}
        mapped = _mapped_files(model)
        for name, m in linears.items():
            tensors[f"{name}.int8"], tensors[f"{name}.scale"] = quantize_weight(m.weight)
            _release(mapped, f"{name}.weight")  # a memory-mapped weight's pages leave the process at once
        if cache is not None:
            try:
                write_int8_cache(cache, tensors, key)
            except OSError as exc:  # a read-only cache: run without it
                log.warning("cannot cache the int8 weights at %s (%s)", cache, exc)
    for name, m in linears.items():
        owner, _, leaf = name.rpartition(".")
        parent = model.get_submodule(owner) if owner else model
        setattr(parent, leaf, Int8Linear(tensors[f"{name}.int8"], tensors[f"{name}.scale"], m.bias))
    return len(linears)


def _mapped_files(model: nn.Module) -> list[tuple[str, Any]]:
    """``(module name, MappedFile)`` of the modules of ``model`` whose weights are memory-mapped from a checkpoint
    (:mod:`demixer.models.mapped`)."""
    return [(p, m._mapped_weights) for p, m in model.named_modules() if hasattr(m, "_mapped_weights")]


def _release(mapped: list[tuple[str, Any]], name: str) -> None:
    """Drop the pages of parameter ``name`` (a name in the whole model) from the process, where it is mapped."""
    for prefix, file in mapped:
        if prefix and not name.startswith(prefix + "."):
            continue
        relative = name[len(prefix) + 1 :] if prefix else name
        if relative in file.entries:
            file.release(relative)


def measured_file() -> Path:
    """This machine's fast-mode numbers, written by ``benchmarks/fast_mode.py --record``."""
    from ..pretrained import cache_dir

    return cache_dir() / "fast" / "measured.json"


#: The numbers measured when this version was made (``fast_measured.json`` beside this module).
PACKAGED_MEASUREMENTS = Path(__file__).with_name("fast_measured.json")


def write_measurements(path: Path, rows: dict[str, dict], machine: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps({"machine": machine, "architectures": rows}, indent=1))


def fast_measurements() -> tuple[dict[str, dict], str]:
    """``({architecture: row}, where they were measured)``: this machine's numbers when it has recorded
    some (``benchmarks/fast_mode.py --record``), else those shipped with this version."""
    for path, where in (
        (measured_file(), "this machine"),
        (PACKAGED_MEASUREMENTS, "the machine this version was made on"),
    ):
        try:
            data = json.loads(path.read_text())
            return data["architectures"], f"{where} ({data.get('machine', 'unknown')})"
        except (OSError, ValueError, KeyError):
            continue
    return {}, "nowhere"


class FastModel(SeparationModel):
    """A model run with its :class:`~demixer.models.base.FastRecipe` applied (see the module docstring).

    Shape:
        ``forward``: ``[B, C, T]`` -> ``[B, S, C, T]`` float32, as the wrapped model.
    """

    def __init__(self, model: SeparationModel, recipe: FastRecipe, bf16: bool, int8_layers: int) -> None:
        super().__init__()
        self.model = model
        self.recipe, self.bf16, self.int8_layers = recipe, bf16, int8_layers
        self._adopt_from(model)
        if recipe.overlap is not None:
            self.default_overlap = recipe.overlap

    def forward(self, mix: Tensor) -> Tensor:
        if self.bf16:
            with torch.autocast(mix.device.type, dtype=torch.bfloat16):
                return self.model(mix).float()
        return self.model(mix)

    def summary(self) -> str:
        """What the fast mode changed, in words (for logs and the provenance of results)."""
        done = []
        if self.int8_layers:
            done.append(f"int8 weights in {self.int8_layers} Linear layers")
        if self.bf16:
            done.append("bfloat16 autocast")
        if self.recipe.overlap is not None:
            done.append(f"overlap {self.recipe.overlap:g}")
        return ", ".join(done) or "nothing (no step applies on this device)"


def fast_recipe_of(model: SeparationModel) -> FastRecipe | None:
    """The recipe of ``model``, looking through wrappers that add stems (``WithResidual``)."""
    while model.fast_recipe is None and isinstance(getattr(model, "model", None), SeparationModel):
        model = model.model  # type: ignore[assignment]
    return model.fast_recipe


def make_fast(
    model: SeparationModel, device: torch.device | str = "cpu", cache: Path | None = None, copy_model: bool = False
) -> SeparationModel:
    """``model`` with its fast recipe applied for ``device`` (``model`` itself when it has none).

    Args:
        cache: file for the int8 weights (derived once, verified by sha256 at every load).
        copy_model: leave ``model`` untouched and change a copy (int8 layers replace modules in place).
    """
    device = torch.device(device)
    recipe = fast_recipe_of(model)
    if recipe is None:
        log.info("%s has no fast mode: it runs exact", type(model).__name__)
        return model
    if copy_model:
        model = copy.deepcopy(model)
    int8 = quantize_linears(model, cache) if recipe.int8_linear and device.type == "cpu" else 0
    bf16 = recipe.bf16 and native_bf16(device)
    return FastModel(model, recipe, bf16, int8).eval()
