"""Small request/response helpers shared by the route modules."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from mncore._util import dumps
from mncore.config import Settings
from mncore.errors import ValidationError
from mncore.runtime import Runtime
from mncore.submission import INVALID_JSON

__all__ = ["INT_MAX", "JSON", "json_body", "query_bool", "query_int", "runtime", "settings"]

#: the largest integer a query parameter may carry (store backends index with 64-bit integers)
INT_MAX = 2**31 - 1

_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}


class JSON(Response):
    """A JSON response rendered with orjson (non-UTF-8 bytes as ``{"$bytes": ...}``)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return dumps(content)


def runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


def settings(request: Request) -> Settings:
    cfg: Settings = request.app.state.settings
    return cfg


async def json_body(request: Request, error: str = INVALID_JSON) -> Any:
    """The parsed JSON body; ``error`` (400) when it is missing or not JSON."""
    raw = await request.body()
    if not raw.strip():
        raise ValidationError(error.format(detail="the body is empty"))
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValidationError(error.format(detail=exc)) from None


def query_int(request: Request, name: str, default: int | None, minimum: int) -> int | None:
    """An integer query parameter in ``minimum..INT_MAX``; 400 naming the parameter otherwise."""
    raw = request.query_params.get(name)
    if raw is None:
        return default
    text = raw.strip()
    value = int(text) if text.isdigit() and len(text) <= 10 else -1
    if not minimum <= value <= INT_MAX:
        kind = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ValidationError(f"{name} must be {kind} up to {INT_MAX} (got {raw!r})")
    return value


def query_bool(request: Request, name: str, default: bool) -> bool:
    """``true``/``1``/``yes`` or ``false``/``0``/``no`` (any case); 400 naming the parameter otherwise."""
    raw = request.query_params.get(name)
    if raw is None:
        return default
    low = raw.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ValidationError(f"{name} must be true or false (got {raw!r})")
