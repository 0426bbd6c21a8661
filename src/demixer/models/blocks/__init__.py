"""Building blocks shared by the models, written once: norms, rotary embeddings, attention, MLPs."""

from .attention import Attention, FeedForward, RMSNorm, RotaryEmbedding, Transformer

__all__ = ["Attention", "FeedForward", "RMSNorm", "RotaryEmbedding", "Transformer"]
