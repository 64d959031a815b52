"""Resource routes: the report and the limits (api.md §3.4; operations.md §3)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from ._http import JSON, json_body, runtime
from .routing import Endpoint, Op

__all__ = ["ENDPOINTS"]

BAD_JSON = "resource body must be valid JSON: {detail}"


async def get_resource(request: Request) -> Response:
    return JSON(await runtime(request).resource_report())


async def set_resource(request: Request) -> Response:
    return JSON(await runtime(request).set_resource_limits(await json_body(request, BAD_JSON)))


def _set(method: str) -> Op:
    summary = "Set resource limits (25, 50, 75 or 100 per resource)"
    return Op(method, set_resource, f"setResource{method.title()}", summary, {200: "ResourceReport"}, body="Limits")


ENDPOINTS = [
    Endpoint(
        "/resource",
        (Op("GET", get_resource, "getResource", "Resource report", {200: "ResourceReport"}), _set("POST"), _set("PUT")),
    ),
]
