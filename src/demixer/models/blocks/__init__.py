"""Building blocks shared by the models, written once: norms, rotary embeddings, attention, MLPs, inference fusions."""

from .attention import Attention, FeedForward, RMSNorm, RotaryEmbedding, Transformer
from .fusion import Fusable

__all__ = ["Attention", "FeedForward", "Fusable", "RMSNorm", "RotaryEmbedding", "Transformer"]
