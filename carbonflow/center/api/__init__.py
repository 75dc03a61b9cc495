"""The center's REST API (contract C3): ``create_app(settings) -> FastAPI``."""

from carbonflow.center.api.app import create_app
from carbonflow.center.api.settings import CenterSettings

__all__ = ["CenterSettings", "create_app"]
