"""Weights memory-mapped from a safetensors file and paged out again after each use.

Large models spend most of their parameters in parts that run once per chunk (a RoFormer's
per-band mask estimators: 80 % of Mel-RoFormer's 228 M weights). With :func:`map_weights` those
parameters are views of a read-only memory map of the checkpoint instead of copies in the heap;
after each forward of a listed module its pages are dropped from the process
(``madvise(MADV_DONTNEED)``) and fault back in from the page cache at the next chunk. Outputs are
bit-identical; the process keeps only the weights in use resident, and the rest lives in the page
cache, which the kernel may reclaim (then it is read from disk again).

Only little-endian safetensors files whose tensors are naturally aligned are mapped (demixer writes
them so); :func:`map_weights` returns False otherwise and the model keeps its ordinary copies.
"""

from __future__ import annotations

import json
import mmap
import os
import struct
from pathlib import Path

import torch
from torch import nn

_DTYPES = {
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "F64": torch.float64,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
_PAGE = mmap.PAGESIZE


class MappedFile:
    """A safetensors file mapped copy-on-write; tensors are zero-copy views of the map."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        with open(self.path, "rb") as f:
            (header_len,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(header_len))
            self.map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
        self.base = 8 + header_len
        self.entries = {k: v for k, v in header.items() if k != "__metadata__"}

    def tensor(self, name: str) -> torch.Tensor | None:
        """The tensor ``name`` as a view of the map, or None where it cannot be mapped (dtype, alignment)."""
        e = self.entries[name]
        dtype = _DTYPES.get(e["dtype"])
        start, end = e["data_offsets"]
        if dtype is None:
            return None
        size = torch.empty(0, dtype=dtype).element_size()
        if (self.base + start) % size or (end - start) % size:
            return None
        count = (end - start) // size
        flat = (
            torch.frombuffer(self.map, dtype=dtype, count=count, offset=self.base + start)
            if count
            else torch.empty(0, dtype=dtype)
        )
        return flat.view(e["shape"])

    def release(self, name: str) -> None:
        """Drop the pages of ``name`` from this process (they stay in the page cache)."""
        start, end = self.entries[name]["data_offsets"]
        lo = (self.base + start) // _PAGE * _PAGE
        hi = -(-(self.base + end) // _PAGE) * _PAGE
        if hi > lo:
            self.map.madvise(mmap.MADV_DONTNEED, lo, min(hi, len(self.map)) - lo)


def map_weights(model: nn.Module, path: str | os.PathLike[str], streamed: list[str]) -> bool:
    """Make ``model``'s parameters views of ``path`` (which holds its state dict) and page the
    parameters of the modules named in ``streamed`` out after each of their forwards.

    Returns:
        True when every parameter was mapped; False when the file cannot be mapped (the model is left as it was).
    """
    if not hasattr(mmap, "MADV_DONTNEED"):
        return False
    mapped = MappedFile(path)
    params = dict(model.named_parameters())
    views = {}
    for name, p in params.items():
        view = mapped.tensor(name) if name in mapped.entries else None
        if view is None or view.shape != p.shape or view.dtype != p.dtype:
            return False
        views[name] = view
    for name, view in views.items():
        owner, _, leaf = name.rpartition(".")
        module = model.get_submodule(owner) if owner else model
        module._parameters[leaf] = nn.Parameter(view, requires_grad=False)

    def page_out(module: nn.Module, prefix: str):
        names = [f"{prefix}.{n}" for n, _ in module.named_parameters()]

        def hook(*_):
            for n in names:
                mapped.release(n)

        return hook

    for prefix in streamed:
        module = model.get_submodule(prefix)
        module.register_forward_hook(page_out(module, prefix))
        page_out(module, prefix)()  # nothing of it is resident until it runs
    setattr(model, "_mapped_weights", mapped)  # noqa: B010 (keeps the map alive as long as the model)
    return True


def load_mapped(model: nn.Module, path: str | os.PathLike[str]) -> bool:
    """Load a safetensors state dict into ``model``: parameters mapped (:func:`map_weights`, with
    the model's ``streamed_modules()`` paged out between uses), buffers copied.

    Returns False (``model`` untouched) when the file cannot be mapped; the caller then loads copies.
    """
    from safetensors import safe_open

    streamed: list[str] = getattr(model, "streamed_modules", list)()
    expected = set(model.state_dict())
    with safe_open(str(path), framework="pt") as f:
        keys = set(f.keys())
        if keys != expected:
            return False
        params = {name for name, _ in model.named_parameters(remove_duplicate=False)}
        buffers = {k: f.get_tensor(k) for k in keys - params}
    if not map_weights(model, path, streamed):
        return False
    model.load_state_dict({**{k: v for k, v in model.state_dict().items() if k in params}, **buffers}, strict=True)
    return True
