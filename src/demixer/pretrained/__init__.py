"""The only code allowed to touch the network (model downloads); today: the cache location."""

from .cache import cache_dir, offline

__all__ = ["cache_dir", "offline"]
