"""System routes: health, system summary, nodes, metrics (api.md §3, §4)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from ._http import JSON, runtime
from .routing import Endpoint, Op

__all__ = ["ENDPOINTS"]

_HEALTH = b'{"status":"ok"}'


async def health(request: Request) -> Response:
    return Response(_HEALTH, media_type="application/json")


async def system_summary(request: Request) -> Response:
    return JSON(await runtime(request).cluster_overview())


async def list_nodes(request: Request) -> Response:
    return JSON({"data": await runtime(request).inspect_nodes()})


async def metrics(request: Request) -> Response:
    return JSON(await runtime(request).metrics())


ENDPOINTS = [
    Endpoint("/health", (Op("GET", health, "health", "Liveness", {200: "Health"}, public=True),)),
    Endpoint(
        "/system/summary", (Op("GET", system_summary, "systemSummary", "Nodes and jobs", {200: "SystemSummary"}),)
    ),
    Endpoint("/nodes", (Op("GET", list_nodes, "listNodes", "Nodes with executor pool stats", {200: "NodeList"}),)),
    Endpoint("/metrics", (Op("GET", metrics, "metrics", "Job counts by status, node count", {200: "Metrics"}),)),
]
