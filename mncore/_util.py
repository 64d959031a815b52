"""Small shared helpers: identifiers, timestamps, JSON, and the original's value rendering."""

from __future__ import annotations

import base64
import binascii
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


_URLSAFE = bytes.maketrans(b"+/", b"-_")
_BATCH = 512
_ready: dict[int, list[str]] = {10: [], 8: []}  # pre-made ids by byte length; list.pop is atomic


def _encode(raw: bytes) -> str:
    return binascii.b2a_base64(raw, newline=False).translate(_URLSAFE).rstrip(b"=").decode("ascii")


def _refill(nbytes: int) -> list[str]:
    raw = os.urandom(nbytes * _BATCH)  # one syscall per batch
    ready = _ready[nbytes]
    ready.extend([_encode(raw[i : i + nbytes]) for i in range(0, len(raw), nbytes)])
    return ready


def _reset_ids() -> None:
    for ready in _ready.values():
        ready.clear()  # a forked child must never reuse its parent's ids


os.register_at_fork(after_in_child=_reset_ids)


def new_id(nbytes: int = 10) -> str:
    """URL-safe base64 of random bytes, no padding (message ids: 10 bytes, lease ids: 8)."""
    ready = _ready.get(nbytes)
    if ready is None:
        return _encode(os.urandom(nbytes))
    while True:
        try:
            return ready.pop()
        except IndexError:
            ready = _refill(nbytes)


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
    return orjson.dumps(value, default=_default, option=opts)


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
    try:
        return dumps_str(value)
    except TypeError:  # e.g. integers beyond 64 bits, which orjson refuses
        return _json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=repr)


_NAME_RE = re.compile(r"[^a-z0-9-]")


def sanitize_name(text: str) -> str:
    """Lower-case, every character outside ``[a-z0-9-]`` becomes ``-``."""
    return _NAME_RE.sub("-", text.lower())
