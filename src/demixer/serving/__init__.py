"""The HTTP service: ``create_app(ServerSettings(...))``, run by ``demixer serve``."""

from .app import create_app
from .settings import ServerSettings

__all__ = ["ServerSettings", "create_app"]
