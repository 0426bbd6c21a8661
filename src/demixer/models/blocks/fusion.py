"""Inference fusions: faster or leaner versions of a module's ``forward``, switched on explicitly.

A model's ``forward`` is its reference computation, the one a reader must understand and the one
training differentiates. Some modules also have a fused version for inference (operations merged,
intermediates written in place) that gives the same output within float rounding.
:meth:`~demixer.models.base.SeparationModel.fuse_for_inference` switches them on; the separation
engine calls it on the models it loads. Each fused path is checked against the reference one in
``tests/test_fusions.py``.
"""

from __future__ import annotations

import torch
from torch import nn


class Fusable(nn.Module):
    """A module with a fused inference path, taken while :attr:`fused` is set.

    ``fused`` is set by :meth:`~demixer.models.base.SeparationModel.fuse_for_inference`, never by grad
    mode or train mode. A fused path writes intermediates in place, so it refuses to run where autograd
    records (call it under ``torch.inference_mode()`` or ``torch.no_grad()``).
    """

    fused: bool = False

    def check_fused_inference(self) -> None:
        """Raise when a fused path would run where autograd records."""
        if torch.is_grad_enabled() or self.training:
            raise RuntimeError(
                f"{type(self).__name__} is fused for inference: run it in eval mode under "
                "torch.inference_mode() (or call unfuse() to train it)"
            )
