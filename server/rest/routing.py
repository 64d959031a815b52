"""Declarative endpoints: one table feeds both the Starlette routes and the OpenAPI document.

Each :class:`Endpoint` is one path with its operations. :func:`routes` turns a path into a single
Starlette ``Route`` whose methods are the operations' methods, so a wrong method on a known path
answers 405 with an ``Allow`` header listing exactly those methods.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

__all__ = ["API_PREFIX", "Endpoint", "Handler", "Op", "Param", "routes"]

API_PREFIX = "/api/v1"

Handler = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True)
class Param:
    """A path, query or header parameter, documented with a JSON schema."""

    name: str
    location: str  # "path" | "query" | "header"
    schema: Mapping[str, Any]
    description: str = ""

    @property
    def required(self) -> bool:
        return self.location == "path"


@dataclass(frozen=True)
class Op:
    """One method of an endpoint: its handler and what the OpenAPI document says about it."""

    method: str
    handler: Handler
    operation_id: str
    summary: str
    responses: Mapping[int, str]  # status -> schema component name
    params: tuple[Param, ...] = ()
    body: str | None = None  # request schema component (JSON), or "multipart:<component>"
    body_required: bool = True
    stream: bool = False  # the success response is text/event-stream
    public: bool = False  # reachable without the bearer token
    #: OpenAPI links from the success response: name -> (operationId, {parameter: expression})
    links: Mapping[str, tuple[str, Mapping[str, str]]] = field(default_factory=dict)


@dataclass(frozen=True)
class Endpoint:
    path: str  # below API_PREFIX
    ops: tuple[Op, ...] = field(default_factory=tuple)


def _dispatch(ops: tuple[Op, ...]) -> Handler:
    if len(ops) == 1:
        return ops[0].handler
    by_method = {op.method: op.handler for op in ops}
    if "GET" in by_method:
        by_method.setdefault("HEAD", by_method["GET"])

    async def endpoint(request: Request) -> Response:
        return await by_method[request.method](request)

    return endpoint


def routes(endpoints: list[Endpoint]) -> list[Route]:
    return [
        Route(
            API_PREFIX + ep.path, _dispatch(ep.ops), methods=[op.method for op in ep.ops], name=ep.ops[0].operation_id
        )
        for ep in endpoints
    ]
