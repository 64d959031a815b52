"""Small shared helpers: identifiers, timestamps, JSON, and the original's value rendering."""

from __future__ import annotations

import base64
import json as _json
import os
import re
import time
from datetime import UTC, datetime
from typing import Any

import orjson

__all__ = [
    "dumps",
    "dumps_str",
    "inspect",
    "job_id_for",
    "loads",
    "new_id",
    "now_iso",
    "iso_from_ms",
    "ms_from_iso",
]


def new_id(nbytes: int = 10) -> str:
    """URL-safe base64 of random bytes, no padding (message ids: 10 bytes, lease ids: 8)."""
    return base64.urlsafe_b64encode(os.urandom(nbytes)).rstrip(b"=").decode("ascii")


def job_id_for(graph_id: str) -> str:
    """``<graph_id>-<unix_ms>-<12 lowercase hex>``."""
    return f"{graph_id}-{int(time.time() * 1000)}-{os.urandom(6).hex()}"


def iso_from_ms(ms: float) -> str:
    dt = datetime.fromtimestamp(ms / 1000.0, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


_last_iso: list[Any] = [0, ""]


def now_iso() -> str:
    """ISO-8601 UTC with milliseconds and ``Z`` (cached per millisecond: it is on the hot path)."""
    ms = int(time.time() * 1000)
    if ms != _last_iso[0]:
        _last_iso[0] = ms
        _last_iso[1] = iso_from_ms(ms)
    return str(_last_iso[1])


def ms_from_iso(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000.0
    except ValueError:
        return None


_OPTS = orjson.OPT_NON_STR_KEYS


def _default(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return {"$bytes": base64.b64encode(raw).decode("ascii")}
    if isinstance(value, (set, frozenset)):
        return list(value)
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def dumps(value: Any, *, sort_keys: bool = False, indent: bool = False) -> bytes:
    """JSON bytes; bytes values that are not UTF-8 render as ``{"$bytes": "<base64>"}``."""
    opts = _OPTS
    if sort_keys:
        opts |= orjson.OPT_SORT_KEYS
    if indent:
        opts |= orjson.OPT_INDENT_2
    try:
        return orjson.dumps(value, default=_default, option=opts)
    except orjson.JSONEncodeError as exc:
        if "64-bit" not in str(exc):
            raise
        # integers beyond 64 bits: the stdlib encoder handles them (rare, never on a hot path)
        return _json.dumps(
            value,
            default=_default,
            sort_keys=sort_keys,
            indent=2 if indent else None,
            separators=None if indent else (",", ":"),
            ensure_ascii=False,
        ).encode("utf-8")


def dumps_str(value: Any, **kwargs: Any) -> str:
    return dumps(value, **kwargs).decode("utf-8")


loads = orjson.loads


def inspect(value: Any) -> str:
    """Render a value as the original's error strings did: ``nil``, ``"text"``, ``true``, ``3``, JSON."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return dumps_str(value)
    if isinstance(value, (int, float)):
        return repr(value)
    return dumps_str(value)


_NAME_RE = re.compile(r"[^a-z0-9-]")


def sanitize_name(text: str) -> str:
    """Lower-case, every character outside ``[a-z0-9-]`` becomes ``-``."""
    return _NAME_RE.sub("-", text.lower())
