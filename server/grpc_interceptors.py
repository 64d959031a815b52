"""The gRPC server's one interceptor: shutdown gate, bearer-token auth, and the shared error table.

Every RPC but health and reflection passes through :class:`ServiceInterceptor`:

1. after the node closed its runtime (``gate.stopping``): UNAVAILABLE ``node is shutting down``;
2. with ``MN_GRPC_AUTH_TOKEN`` set, metadata ``authorization: Bearer <token>`` (scheme optional,
   constant-time compare) or UNAUTHENTICATED ``gRPC auth token is required for this RPC``;
3. exceptions of the servicer become status codes through :mod:`server.errors` (the table the
   REST handlers use too). A validation failure with several messages also sends them all as
   JSON in the trailing metadata ``mn-errors-bin``.

The admin token of ``ClearJobs`` travels in the request, so the servicer checks it with
:func:`require_admin` (PERMISSION_DENIED).
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import grpc
from grpc import aio

from mncore._util import dumps
from mncore.errors import MNError, ShuttingDown, ValidationError

from .errors import grpc_code_name

logger = logging.getLogger(__name__)

__all__ = [
    "ADMIN_REQUIRED",
    "AUTH_REQUIRED",
    "EXEMPT_PREFIXES",
    "Gate",
    "ServiceInterceptor",
    "require_admin",
    "token_matches",
]

AUTH_REQUIRED = "gRPC auth token is required for this RPC"
ADMIN_REQUIRED = "ClearJobs requires the admin token (MN_GRPC_ADMIN_TOKEN)"
ERRORS_KEY = "mn-errors-bin"
#: services that answer without a token and without the gate (health keeps its own status)
EXEMPT_PREFIXES = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)

Handler: TypeAlias = Any  # grpc.RpcMethodHandler (grpc ships no type information)
Continuation = Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]]


@dataclass
class Gate:
    """Set ``stopping`` once the runtime is closed: every service RPC then answers UNAVAILABLE."""

    stopping: bool = False


def token_matches(given: str | bytes | None, expected: str) -> bool:
    """``Bearer <token>`` or the bare token, compared in constant time."""
    text = given.decode("utf-8", "surrogateescape") if isinstance(given, bytes) else (given or "")
    scheme, sep, rest = text.strip().partition(" ")
    value = rest.strip() if sep and scheme.lower() == "bearer" else text.strip()
    return hmac.compare_digest(value.encode("utf-8", "surrogateescape"), expected.encode("utf-8", "surrogateescape"))


async def require_admin(context: aio.ServicerContext[Any, Any], given: str, admin_token: str | None) -> None:
    """PERMISSION_DENIED unless ``given`` is the admin token (no check when none is configured)."""
    if admin_token and not token_matches(given, admin_token):
        await context.abort(grpc.StatusCode.PERMISSION_DENIED, ADMIN_REQUIRED)


async def _abort_with(context: aio.ServicerContext[Any, Any], exc: Exception) -> None:
    code = getattr(grpc.StatusCode, grpc_code_name(exc))
    if isinstance(exc, MNError):
        message = exc.message
        if isinstance(exc, ValidationError) and len(exc.errors) > 1:
            context.set_trailing_metadata(((ERRORS_KEY, dumps(exc.errors)),))
    elif isinstance(exc, TimeoutError):
        message = str(exc) or "timed out"
    else:
        logger.error("gRPC call failed unexpectedly", exc_info=exc)
        message = "internal server error"
    if code == grpc.StatusCode.INTERNAL and isinstance(exc, MNError):
        logger.warning("gRPC call answered INTERNAL: %s", exc)
    await context.abort(code, message)


class ServiceInterceptor(aio.ServerInterceptor):
    """Gate, auth and error mapping for every service method (see the module docstring)."""

    def __init__(self, gate: Gate, auth_token: str | None = None) -> None:
        self.gate = gate
        self.auth_token = auth_token
        self._wrapped: dict[str, Handler] = {}
        self._refused: dict[str, Handler] = {}

    async def intercept_service(self, continuation: Continuation, details: grpc.HandlerCallDetails) -> Any:
        method = details.method
        handler = await continuation(details)
        if handler is None or method.startswith(EXEMPT_PREFIXES):
            return handler
        if self.auth_token and not self._authorized(details.invocation_metadata):
            refused = self._refused.get(method)
            if refused is None:
                refused = self._refused[method] = _rewrap(handler, _refuse_unary, _refuse_stream)
            return refused
        wrapped = self._wrapped.get(method)
        if wrapped is None:
            wrapped = self._wrapped[method] = _rewrap(handler, self._guard_unary, self._guard_stream)
        return wrapped

    def _authorized(self, metadata: Sequence[tuple[str, str | bytes]] | None) -> bool:
        assert self.auth_token is not None
        for key, value in metadata or ():
            if key == "authorization":
                return token_matches(value, self.auth_token)
        return False

    def _guard_unary(self, behavior: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        gate = self.gate

        async def unary(request: Any, context: aio.ServicerContext[Any, Any]) -> Any:
            if gate.stopping:
                await context.abort(grpc.StatusCode.UNAVAILABLE, ShuttingDown().message)
            try:
                return await behavior(request, context)
            except aio.AbortError:
                raise
            except Exception as exc:
                await _abort_with(context, exc)

        return unary

    def _guard_stream(self, behavior: Callable[..., AsyncIterator[Any]]) -> Callable[..., AsyncIterator[Any]]:
        gate = self.gate

        async def stream(request: Any, context: aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
            if gate.stopping:
                await context.abort(grpc.StatusCode.UNAVAILABLE, ShuttingDown().message)
            try:
                async for item in behavior(request, context):
                    yield item
            except aio.AbortError:
                raise
            except Exception as exc:
                await _abort_with(context, exc)

        return stream


async def _refuse_unary_call(request: Any, context: aio.ServicerContext[Any, Any]) -> Any:
    await context.abort(grpc.StatusCode.UNAUTHENTICATED, AUTH_REQUIRED)


async def _refuse_stream_call(request: Any, context: aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
    await context.abort(grpc.StatusCode.UNAUTHENTICATED, AUTH_REQUIRED)
    yield None  # pragma: no cover - abort raised; this makes the function an async generator


def _refuse_unary(behavior: Any) -> Callable[..., Awaitable[Any]]:
    return _refuse_unary_call


def _refuse_stream(behavior: Any) -> Callable[..., AsyncIterator[Any]]:
    return _refuse_stream_call


def _rewrap(handler: Handler, unary: Callable[[Any], Any], stream: Callable[[Any], Any]) -> Handler:
    """The same method handler with its behaviour passed through ``unary`` or ``stream``."""
    kwargs = {"request_deserializer": handler.request_deserializer, "response_serializer": handler.response_serializer}
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(unary(handler.unary_unary), **kwargs)
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(stream(handler.unary_stream), **kwargs)
    return handler  # client streaming methods: none in these services
