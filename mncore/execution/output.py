"""Capturing and interpreting a payload's output (executor-contract.md §7, §9, §11).

:class:`StreamCapture` takes raw chunks of one stream, strips beacon lines (stdout only), keeps
at most ``cap`` bytes and counts the rest. The remaining helpers are pure functions on text.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from .._util import dumps_str, loads

__all__ = [
    "STRUCTURED_KEYS",
    "TRANSIENT_MARKERS",
    "Redactor",
    "StreamCapture",
    "exit_code_from_returncode",
    "is_transient",
    "parse_beacon",
    "parse_structured",
    "truncation_marker",
]

STRUCTURED_KEYS = frozenset(
    ("emit_messages", "events", "next_state", "complete_job", "complete_job?", "complete_step", "complete_run")
)
TRANSIENT_MARKERS = (
    "h2 protocol error",
    "peer closed connection",
    "status: unknown",
    "error reading a body from connection",
    "tls close_notify",
    "transport error",
    "connection reset",
    "connection refused",
    "timed out",
    "deadline exceeded",
    "unavailable",
    "agent beacon deadline exceeded",
    "artifact_not_ready",
)
_SECRET_NAME_RE = re.compile(r"TOKEN|SECRET|KEY|COOKIE|PASSWORD", re.IGNORECASE)
_MIN_SECRET = 6
_MAX_BEACON_LINE = 1 << 20


_secret_keys: dict[tuple[str, ...], tuple[str, ...]] = {}


def _secret_keys_of(env: Mapping[str, str]) -> tuple[str, ...]:
    """The secret-looking names of ``env`` (cached by key set: the same names come back every run)."""
    names = tuple(env)
    found = _secret_keys.get(names)
    if found is None:
        if len(_secret_keys) > 4096:
            _secret_keys.clear()
        found = _secret_keys[names] = tuple(k for k in names if _SECRET_NAME_RE.search(k))
    return found


def truncation_marker(omitted: int) -> str:
    return f"[mn: output truncated, {omitted} bytes omitted]"


class StreamCapture:
    """Bounded capture of one output stream, with beacon-line stripping when ``prefix`` is given.

    ``on_beacon(text)`` receives the remainder of every line that starts with the prefix; such
    lines are not captured. Lines are only split when the prefix occurs, so plain output costs
    one ``bytes.find`` per chunk.
    """

    __slots__ = ("_buf", "_cap", "_chunks", "_midline", "_on_beacon", "_prefix", "omitted", "size")

    def __init__(self, cap: int, prefix: bytes | None = None, on_beacon: Callable[[str], None] | None = None):
        self._cap = max(int(cap), 0)
        self._prefix = prefix if on_beacon is not None else None
        self._on_beacon = on_beacon
        self._chunks: list[bytes] = []
        self._buf = b""  # an unfinished line that may still turn out to be a beacon
        self._midline = False  # inside a line known not to be a beacon
        self.size = 0
        self.omitted = 0

    def feed(self, data: bytes) -> None:
        prefix = self._prefix
        if prefix is None:
            self._keep(data)
            return
        if self._buf:
            data, self._buf = self._buf + data, b""
        elif self._midline:
            nl = data.find(b"\n")
            if nl < 0:
                self._keep(data)
                return
            self._keep(data[: nl + 1])
            data = data[nl + 1 :]
            self._midline = False
        if prefix not in data:
            nl = data.rfind(b"\n")
            if nl >= 0:
                self._keep(data[: nl + 1])
                data = data[nl + 1 :]
            self._tail(data)
            return
        lines = data.split(b"\n")
        for line in lines[:-1]:
            if line.startswith(prefix):
                self._beacon(line[len(prefix) :])
            else:
                self._keep(line + b"\n")
        self._tail(lines[-1])

    def _tail(self, tail: bytes) -> None:
        """An unfinished line at line start: keep it pending while it may still be a beacon."""
        prefix = self._prefix
        assert prefix is not None
        if not tail:
            return
        if tail.startswith(prefix) or prefix.startswith(tail):
            if len(tail) > _MAX_BEACON_LINE:  # a runaway line: treat it as output
                self._keep(tail)
                self._midline = True
            else:
                self._buf = tail
            return
        self._keep(tail)
        self._midline = True

    def _beacon(self, rest: bytes) -> None:
        assert self._on_beacon is not None
        self._on_beacon(rest.decode("utf-8", "replace").rstrip("\r"))

    def _keep(self, data: bytes) -> None:
        room = self._cap - self.size
        if len(data) <= room:
            self._chunks.append(data)
            self.size += len(data)
            return
        if room > 0:
            self._chunks.append(data[:room])
            self.size += room
        self.omitted += len(data) - max(room, 0)

    def close(self) -> None:
        """End of stream: a pending line is a beacon if it starts with the prefix, else output."""
        buf, self._buf = self._buf, b""
        if buf:
            if self._prefix is not None and buf.startswith(self._prefix):
                self._beacon(buf[len(self._prefix) :])
            else:
                self._keep(buf)

    @property
    def truncated(self) -> bool:
        return self.omitted > 0

    def text(self) -> str:
        """The captured text, with the truncation marker line when bytes were dropped."""
        raw = b"".join(self._chunks).decode("utf-8", "replace")
        if self.omitted:
            sep = "" if not raw or raw.endswith("\n") else "\n"
            raw = f"{raw}{sep}{truncation_marker(self.omitted)}\n"
        return raw


class Redactor:
    """Replaces the values of secret-named variables (``TOKEN``, ``SECRET``, ``KEY``, ...)."""

    __slots__ = ("_re",)

    def __init__(self, env: Mapping[str, str]):
        values = {v for v in map(env.__getitem__, _secret_keys_of(env)) if len(v) >= _MIN_SECRET}
        ordered = sorted(values, key=len, reverse=True)  # longest first: a secret containing another
        self._re = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def __bool__(self) -> bool:
        return self._re is not None

    def __call__(self, text: str) -> str:
        if self._re is None or not text:
            return text
        return self._re.sub("[REDACTED]", text)


def parse_beacon(text: str) -> dict[str, Any]:
    """A beacon line's remainder: a JSON object is the payload, anything else ``{message: text}``."""
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            value = loads(stripped)
        except ValueError:
            value = None
        if isinstance(value, dict):
            return value
    return {"message": stripped}


def parse_structured(stdout: str) -> dict[str, Any] | None:
    """The whole trimmed stdout as one JSON object with a §9 key, else ``None`` (not an error)."""
    text = stdout.strip()
    if not text.startswith("{") or not text.endswith("}"):
        return None
    try:
        value = loads(text)
    except ValueError:
        return None
    if isinstance(value, dict) and not STRUCTURED_KEYS.isdisjoint(value):
        return value
    return None


def is_transient(error: Mapping[str, Any] | str | None) -> bool:
    """True when the error's text contains a transient marker (§11), case-insensitively."""
    if error is None:
        return False
    if isinstance(error, str):
        haystack = error.lower()
    else:
        parts = [str(error.get(key) or "") for key in ("error", "logs", "raw_output", "stderr", "stdout")]
        try:
            parts.append(dumps_str(dict(error)))
        except TypeError:
            parts.append(repr(error))
        haystack = "\n".join(parts).lower()
    return any(marker in haystack for marker in TRANSIENT_MARKERS)


def exit_code_from_returncode(returncode: int) -> int:
    """Process exit status; killed by signal n (``-n`` in Python) → ``128 + n``."""
    return 128 - returncode if returncode < 0 else returncode
