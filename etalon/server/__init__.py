"""The embedded OpenAI-compatible server: the shared engine driven by the wall clock."""

from etalon.server.app import ServerConfig, build_app
from etalon.server.runner import EngineRunner

__all__ = ["EngineRunner", "ServerConfig", "build_app"]
