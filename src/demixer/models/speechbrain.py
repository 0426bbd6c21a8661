"""SpeechBrain's SepFormer checkpoints (``encoder.ckpt``, ``masknet.ckpt``, ``decoder.ckpt``: plain state dicts) as
state dicts of :class:`~demixer.models.sepformer.SepFormer`, whose transformer layers are torch's
``nn.TransformerEncoderLayer`` (SpeechBrain wraps ``nn.MultiheadAttention`` and its own feed-forward and norms)."""

from __future__ import annotations

from torch import Tensor

from .checkpoint import renamed

_STACK = r"^masknet\.dual_mdl\.(\d+)\.(intra|inter)_mdl\.mdl\."  # block i's intra or inter transformer
_RENAMES = (
    (_STACK + r"layers\.(\d+)\.self_att\.att\.", r"blocks.\1.\2.layers.\3.self_attn."),
    (_STACK + r"layers\.(\d+)\.pos_ffn\.ffn\.0\.", r"blocks.\1.\2.layers.\3.linear1."),
    (_STACK + r"layers\.(\d+)\.pos_ffn\.ffn\.3\.", r"blocks.\1.\2.layers.\3.linear2."),
    (_STACK + r"layers\.(\d+)\.(norm[12])\.norm\.", r"blocks.\1.\2.layers.\3.\4."),
    (_STACK + r"norm\.norm\.", r"blocks.\1.\2.norm."),
    (r"^masknet\.dual_mdl\.(\d+)\.(intra|inter)_norm\.", r"blocks.\1.\2_norm."),
    (r"^masknet\.norm\.", "norm."),
    (r"^masknet\.conv1d\.", "bottleneck."),
    (r"^masknet\.prelu\.", "prelu."),
    (r"^masknet\.conv2d\.", "to_speakers."),
    (r"^masknet\.output\.0\.", "output."),
    (r"^masknet\.output_gate\.0\.", "output_gate."),
    (r"^masknet\.end_conv1x1\.", "to_mask."),
    (r"^encoder\.conv1d\.", "encoder."),
    (r"^decoder\.", "decoder."),
)


def state_dict(parts: dict[str, dict[str, Tensor]]) -> dict[str, Tensor]:
    """SpeechBrain's ``{"encoder": ..., "masknet": ..., "decoder": ...}`` state dicts as one state dict of
    :class:`~demixer.models.sepformer.SepFormer`. The positional tables (``pos_enc.pe``) are dropped: the model
    computes its own."""
    return {
        renamed(f"{part}.{key}", _RENAMES): value
        for part, tensors in parts.items()
        for key, value in tensors.items()
        if not key.endswith("pos_enc.pe")
    }
