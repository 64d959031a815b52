"""Serving the REST app with Hypercorn on the node's event loop (uvloop under ``mn server``).

The listening socket is bound by :meth:`RestServer.bind` before the node reports readiness, so a
port in use fails the start instead of a background task; Hypercorn receives it as ``fd://``.
"""

from __future__ import annotations

import asyncio
import logging
import socket

from hypercorn.asyncio import serve
from hypercorn.config import Config

from mncore.config import Settings
from mncore.runtime import Runtime

from .app import create_app

logger = logging.getLogger(__name__)

__all__ = ["GRACEFUL_TIMEOUT_S", "RestServer", "bind_socket"]

#: how long open connections (e.g. event streams) get once the server stops
GRACEFUL_TIMEOUT_S = 5.0


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket; ``port`` 0 picks a free one. Raises ``OSError`` (e.g. address in use)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family, backlog=1024)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


class RestServer:
    """The node's REST listener: ``bind()`` then ``serve(stop)`` until ``stop`` is set."""

    name = "rest"

    def __init__(self, runtime: Runtime, settings: Settings) -> None:
        self.settings = settings
        self.app = create_app(runtime, settings)
        self.url = ""
        self._fd: int | None = None

    def bind(self) -> str:
        sock = bind_socket(self.settings.api_host, self.settings.api_port)
        host, port = sock.getsockname()[:2]
        self.url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
        self._fd = sock.detach()
        return self.url

    def closing(self) -> None:
        """The runtime is closed: answer 503 to everything but ``/health`` until the listener stops."""
        self.app.state.gate.stopping = True

    async def serve(self, stop: asyncio.Event) -> None:
        assert self._fd is not None, "bind() first"
        config = Config()
        config.bind = [f"fd://{self._fd}"]
        config.accesslog = None
        config.errorlog = logging.getLogger("hypercorn.error")
        config.graceful_timeout = GRACEFUL_TIMEOUT_S
        config.include_server_header = False
        logger.info("REST API listening on %s/api/v1", self.url)
        await serve(self.app, config, shutdown_trigger=stop.wait)  # type: ignore[arg-type]
