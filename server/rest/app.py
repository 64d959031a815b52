"""The Starlette application: routes from the endpoint table, middleware, and error handlers.

Errors become ``{"error": "<message>"}`` with the status of the one table in
:mod:`server.errors` (manifest validation adds ``"errors": [...]``); unknown routes answer 404
``{"error": "not found"}`` and wrong methods 405 ``{"error": "method not allowed"}`` with ``Allow``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response

from mncore.config import Settings
from mncore.errors import ManifestError, MNError
from mncore.runtime import Runtime

from ..errors import http_status
from . import bundles, jobs, resources, streams, system
from ._http import JSON
from .middleware import AuthMiddleware, Gate, GateMiddleware, RequestIdMiddleware, SizeLimitMiddleware
from .openapi import document
from .routing import API_PREFIX, Endpoint, Op, routes

logger = logging.getLogger(__name__)

__all__ = ["create_app", "endpoints"]

_HTTP_ERRORS = {404: "not found", 405: "method not allowed"}


def endpoints() -> list[Endpoint]:
    """Every REST endpoint, the OpenAPI document included."""
    table = [*system.ENDPOINTS, *jobs.ENDPOINTS, *streams.ENDPOINTS, *bundles.ENDPOINTS, *resources.ENDPOINTS]
    op = Op("GET", _openapi, "openapi", "This OpenAPI document", {200: "OpenAPI"})
    return [*table, Endpoint("/openapi.json", (op,))]


async def _openapi(request: Request) -> Response:
    return JSON(request.app.state.openapi)


def error_body(exc: BaseException) -> dict[str, Any]:
    """``{"error": message}``; a manifest validation failure adds ``"errors"`` (every message)."""
    if isinstance(exc, MNError):
        body: dict[str, Any] = {"error": exc.message}
        if isinstance(exc, ManifestError) and exc.errors and http_status(exc) in (400, 422):
            body["errors"] = list(exc.errors)
        return body
    if isinstance(exc, TimeoutError):
        return {"error": str(exc) or "timed out"}
    return {"error": "internal server error"}


async def _mn_error(request: Request, exc: Exception) -> Response:
    status = http_status(exc)
    if status >= 500:
        logger.warning("%s %s answered %d: %s", request.method, request.url.path, status, exc)
    return JSON(error_body(exc), status_code=status)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = _HTTP_ERRORS.get(exc.status_code, exc.detail)
    return JSON({"error": message}, status_code=exc.status_code, headers=exc.headers)


async def _unexpected(request: Request, exc: Exception) -> Response:
    logger.error("%s %s failed unexpectedly", request.method, request.url.path, exc_info=exc)
    return JSON({"error": "internal server error"}, status_code=500)


def _middleware(settings: Settings, gate: Gate, public: frozenset[str]) -> list[Middleware]:
    stack = [Middleware(RequestIdMiddleware)]
    origins = [o.strip() for o in (settings.api_cors_allow_origins or "").split(",") if o.strip()]
    if origins:
        stack.append(
            Middleware(
                CORSMiddleware,
                allow_origins=origins,
                allow_methods=["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"],
                allow_headers=["Authorization", "Content-Type", "X-Request-ID", "Last-Event-ID"],
                expose_headers=["X-Request-ID"],
            )
        )
    stack.append(Middleware(GateMiddleware, gate=gate, public_paths=public))
    if settings.api_token:
        stack.append(Middleware(AuthMiddleware, token=settings.api_token, public_paths=public))
    upload_path = API_PREFIX + "/bundles/upload"
    overrides = {upload_path: settings.api_upload_size_limit_bytes}
    stack.append(Middleware(SizeLimitMiddleware, limit=settings.api_request_size_limit_bytes, overrides=overrides))
    return stack


def create_app(runtime: Runtime, settings: Settings | None = None, *, manage_runtime: bool = False) -> Starlette:
    """The REST app over ``runtime``. With ``manage_runtime`` the app's lifespan starts and closes
    the runtime (in-process tests: the runtime then lives on the server's event loop)."""
    settings = settings or runtime.settings
    table = endpoints()
    public = frozenset(API_PREFIX + ep.path for ep in table if all(op.public for op in ep.ops))
    gate = Gate()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if manage_runtime:
            await runtime.start()
        try:
            yield
        finally:
            if manage_runtime:
                await runtime.bundles.close()
                await runtime.close()

    app = Starlette(
        routes=routes(table),
        middleware=_middleware(settings, gate, public),
        exception_handlers={
            MNError: _mn_error,
            TimeoutError: _mn_error,
            HTTPException: _http_error,
            Exception: _unexpected,
        },
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    app.state.settings = settings
    app.state.gate = gate
    app.state.openapi = document(table, auth=bool(settings.api_token))
    return app
