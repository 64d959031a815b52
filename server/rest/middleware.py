"""ASGI middleware of the REST API: request ids, shutdown gate, bearer auth, request size limits.

Pure ASGI (no ``BaseHTTPMiddleware``) so streaming responses pass straight through. Order, from
the outside in: request id → CORS (when configured) → shutdown gate → auth → size limit.
"""

from __future__ import annotations

import asyncio
import hmac
import re
import uuid
from dataclasses import dataclass

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mncore.errors import ShuttingDown

from ._http import JSON

__all__ = ["AuthMiddleware", "Gate", "GateMiddleware", "RequestIdMiddleware", "SizeLimitMiddleware"]

_REQUEST_ID = re.compile(r"^[\x21-\x7e]{1,128}$")
UNAUTHORIZED = {"error": "unauthorized", "detail": "missing or invalid bearer token"}

#: how long an answered request may keep streaming a body we discard (see ``_discard``)
DISCARD_TIMEOUT_S = 30.0


async def _discard(receive: Receive) -> None:
    """Read and drop the rest of a request body the app did not read.

    Answering before the body is consumed (413, or a route that ignores its body) must still let
    the client finish sending, or the server's per-request queue fills and the connection hangs.
    """
    try:
        async with asyncio.timeout(DISCARD_TIMEOUT_S):
            while True:
                message = await receive()
                if message["type"] != "http.request" or not message.get("more_body", False):
                    return
    except TimeoutError:
        return


@dataclass
class Gate:
    """Set ``stopping`` once the runtime is closed: every call but the public ones answers 503."""

    stopping: bool = False


class RequestIdMiddleware:
    """Echo a well-formed ``X-Request-ID`` or generate one; always return it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = Headers(scope=scope).get("x-request-id", "")
        request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)["X-Request-ID"] = request_id
            await send(message)

        await self.app(scope, receive, send_with_id)


class GateMiddleware:
    def __init__(self, app: ASGIApp, gate: Gate, public_paths: frozenset[str]) -> None:
        self.app = app
        self.gate = gate
        self.public = public_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.gate.stopping and scope["path"] not in self.public:
            await JSON({"error": ShuttingDown().message}, status_code=503)(scope, receive, send)
            await _discard(receive)
            return
        await self.app(scope, receive, send)


class AuthMiddleware:
    """``Authorization: Bearer <token>`` on every path but the public ones (constant-time compare)."""

    def __init__(self, app: ASGIApp, token: str, public_paths: frozenset[str]) -> None:
        self.app = app
        self.token = token.encode("utf-8")
        self.public = public_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in self.public and not self._authorized(scope):
            response = JSON(UNAUTHORIZED, status_code=401, headers={"WWW-Authenticate": "Bearer"})
            await response(scope, receive, send)
            await _discard(receive)
            return
        await self.app(scope, receive, send)

    def _authorized(self, scope: Scope) -> bool:
        scheme, _, given = Headers(scope=scope).get("authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(given.strip().encode("utf-8", "surrogateescape"), self.token)


class _TooLarge(Exception):
    """The body streamed past the limit (raised from ``receive``, caught by the middleware)."""


class SizeLimitMiddleware:
    """413 for a ``Content-Length`` or a streamed body over the limit; 400 for a bad ``Content-Length``."""

    def __init__(self, app: ASGIApp, limit: int, overrides: dict[str, int] | None = None) -> None:
        self.app = app
        self.limit = limit
        self.overrides = overrides or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.overrides.get(scope["path"], self.limit)
        declared = Headers(scope=scope).get("content-length")
        if declared is not None:
            text = declared.strip()
            if not text.isdigit():
                await JSON({"error": "invalid_content_length"}, status_code=400)(scope, receive, send)
                await _discard(receive)
                return
            if int(text) > limit:
                await self._too_large(limit, scope, receive, send)
                await _discard(receive)
                return
        await self._guarded(limit, scope, receive, send)

    async def _guarded(self, limit: int, scope: Scope, receive: Receive, send: Send) -> None:
        seen = 0
        started = ended = False

        async def counting_receive() -> Message:
            nonlocal seen, ended
            message = await receive()
            if message["type"] == "http.request":
                ended = not message.get("more_body", False)
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _TooLarge()
            else:
                ended = True
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _TooLarge:
            if started:
                raise
            await self._too_large(limit, scope, receive, send)
        if not ended:
            await _discard(receive)

    @staticmethod
    async def _too_large(limit: int, scope: Scope, receive: Receive, send: Send) -> None:
        body = {"error": "request_too_large", "limit_bytes": limit}
        await JSON(body, status_code=413)(scope, receive, send)
