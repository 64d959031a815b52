"""Mailbox slow paths shared by both implementations: waiting, back-pressure, streaming.

Each implementation provides the same primitives, each one short critical section:

``_push(kind, data, token, park) -> OK | FULL | BUSY | LOST``
    write one record; ``BUSY``: another producer is streaming; ``LOST``: our stream was
    cleared. ``park`` clears the space rung on failure (the caller is about to sleep).
``_pop(token, park) -> (kind, payload) | (EMPTY, None) | (OWNED, None)``
    take the head record (pads skipped, orphan chunks discarded); ``OWNED``: the head is a
    chunk of another live reader's stream. ``park`` clears the data rung on failure.
``_push_singles(records, start) -> int`` / ``_pop_singles(n) -> list``: batch fast paths.
``_wstream_begin(token, park) -> seq | 0``, ``_wstream_clear(token)``, ``_rstream_clear(token)``,
``_stream_state() -> (writer, seq, reader)``, ``_bell_enter(which)``, ``_bell_leave(which)``,
``_spin(which)`` and ``_bell`` (a :class:`~mncore._fast._bell.Bell`).

The procedures below are generators yielding "sleep at most this long" so the same code
serves blocking calls (:func:`_bell.run`) and asyncio (:func:`_bell.run_async`).
"""

from __future__ import annotations

import time
from collections.abc import Generator, Iterable, Sequence
from typing import Any

from . import _bell
from ._os import new_token, pid_alive, token_pid
from .layout import KIND_FIRST, KIND_LAST, KIND_MORE, KIND_SINGLE, STREAM_HEADER, STREAM_HEADER_SIZE

__all__ = ["get", "get_async", "get_many", "get_many_async", "put", "put_async", "put_many", "wait_readable"]

# push results
OK = 0
FULL = 1
BUSY = 2
LOST = 3
# pop results that are not record kinds
EMPTY = 0
OWNED = -1
# bells
DATA = 0
SPACE = 1

Wait = Generator[float, None, Any]


def deadline_of(timeout: float | None) -> float | None:
    return None if timeout is None else time.monotonic() + max(0.0, timeout)


def _sleep_for(deadline: float | None) -> float | None:
    """Seconds to sleep before the next check; None once the deadline has passed."""
    if deadline is None:
        return _bell.RECHECK_INTERVAL
    left = deadline - time.monotonic()
    return None if left <= 0 else min(left, _bell.RECHECK_INTERVAL)


class _Liveness:
    """Rate-limited "is the owner of this token dead?" (one check per recheck interval)."""

    __slots__ = ("_next",)

    def __init__(self) -> None:
        self._next = 0.0

    def dead(self, token: int) -> bool:
        now = time.monotonic()
        if not token or now < self._next:
            return False
        self._next = now + _bell.RECHECK_INTERVAL
        return not pid_alive(token_pid(token))


# ---- put ----------------------------------------------------------------------------------


def put_proc(mb: Any, data: Any, deadline: float | None) -> Wait:
    token = new_token()
    if len(data) <= mb._max_single:
        return (yield from _put_record(mb, KIND_SINGLE, data, token, deadline))
    return (yield from _put_stream(mb, data, token, deadline))


def _put_record(mb: Any, kind: int, data: Any, token: int, deadline: float | None) -> Wait:
    status = mb._push(kind, data, token, False)
    if status in (OK, LOST):
        return status == OK
    if deadline is not None and time.monotonic() >= deadline:
        return False
    mb._spin(SPACE)
    mb._bell_enter(SPACE)
    watch = _Liveness()
    try:
        while True:
            status = mb._push(kind, data, token, True)
            if status in (OK, LOST):
                return status == OK
            if status == BUSY:
                writer = mb._stream_state()[0]
                if watch.dead(writer):
                    mb._wstream_clear(writer)
                    continue
            seconds = _sleep_for(deadline)
            if seconds is None:
                return False
            yield seconds
    finally:
        mb._bell_leave(SPACE)


def _begin_stream(mb: Any, token: int, deadline: float | None) -> Wait:
    seq = mb._wstream_begin(token, False)
    if seq or (deadline is not None and time.monotonic() >= deadline):
        return seq
    mb._bell_enter(SPACE)
    watch = _Liveness()
    try:
        while True:
            seq = mb._wstream_begin(token, True)
            if seq:
                return seq
            writer = mb._stream_state()[0]
            if watch.dead(writer):
                mb._wstream_clear(writer)
                continue
            seconds = _sleep_for(deadline)
            if seconds is None:
                return 0
            yield seconds
    finally:
        mb._bell_leave(SPACE)


def _put_stream(mb: Any, data: Any, token: int, deadline: float | None) -> Wait:
    seq = yield from _begin_stream(mb, token, deadline)
    if not seq:
        return False
    try:
        view = memoryview(data)
        total = len(view)
        step = mb._max_single
        first = step - STREAM_HEADER_SIZE
        head = STREAM_HEADER.pack(total, seq) + bytes(view[:first])
        if not (yield from _put_record(mb, KIND_FIRST, head, token, deadline)):
            return False
        pos = first
        while pos < total:
            end = min(total, pos + step)
            kind = KIND_LAST if end == total else KIND_MORE
            if not (yield from _put_record(mb, kind, view[pos:end], token, deadline)):
                return False
            pos = end
        return True
    finally:
        mb._wstream_clear(token)  # after LAST; without LAST this abandons the stream


def put_many_proc(mb: Any, records: Sequence[Any], deadline: float | None) -> Wait:
    done, total = 0, len(records)
    while done < total:
        done += mb._push_singles(records, done)
        if done >= total:
            break
        if not (yield from put_proc(mb, as_buffer(records[done]), deadline)):
            break
        done += 1
    return done


# ---- get ----------------------------------------------------------------------------------

_WAIT, _RETRY, _ABORTED = 0, 1, 2


class _Stream:
    """A record being reassembled by this reader."""

    __slots__ = ("ended", "parts", "seq", "total")

    def __init__(self, payload: bytes) -> None:
        self.total, self.seq = STREAM_HEADER.unpack_from(payload)
        self.parts = [payload[STREAM_HEADER_SIZE:]]
        self.ended = False

    def verdict(self, mb: Any, token: int, watch: _Liveness) -> int:
        writer, seq, reader = mb._stream_state()
        if reader != token:
            return _ABORTED  # a reader cleared us as dead (pid reuse) or a new stream began
        if writer == 0 or seq != self.seq:
            if self.ended:
                return _ABORTED  # the writer left without LAST and we hold every chunk it wrote
            self.ended = True  # LAST may have landed after our pop: look once more
            return _RETRY
        if watch.dead(writer):
            mb._wstream_clear(writer)
            return _RETRY
        return _WAIT

    def finish(self) -> bytes:
        data = b"".join(self.parts)
        if len(data) != self.total:
            raise RuntimeError(f"mailbox stream {self.seq} reassembled {len(data)} bytes, expected {self.total}")
        return data


def get_proc(mb: Any, deadline: float | None) -> Wait:
    token = new_token()
    stream: _Stream | None = None
    registered = False
    watch = _Liveness()
    try:
        kind, payload = mb._pop(token, False)
        while True:
            if kind == KIND_SINGLE:
                stream = None  # a record at the head while we stream: our writer gave up
                return payload
            if kind == KIND_FIRST:
                stream = _Stream(payload)
            elif kind in (KIND_MORE, KIND_LAST):
                if stream is not None:
                    stream.parts.append(payload)
                    stream.ended = False
                    if kind == KIND_LAST:
                        data, stream = stream.finish(), None
                        return data
            else:
                if stream is not None:
                    verdict = stream.verdict(mb, token, watch)
                    if verdict == _RETRY:
                        kind, payload = mb._pop(token, registered)
                        continue
                    if verdict == _ABORTED:
                        stream = None
                        mb._rstream_clear(token)
                elif kind == OWNED:
                    reader = mb._stream_state()[2]
                    if watch.dead(reader):
                        mb._rstream_clear(reader)  # compare-and-clear: a new owner is left alone
                        kind, payload = mb._pop(token, registered)
                        continue
                if stream is None and deadline is not None and time.monotonic() >= deadline:
                    return None
                if not registered:
                    if stream is None:
                        mb._spin(DATA)
                    mb._bell_enter(DATA)
                    registered = True
                    kind, payload = mb._pop(token, True)
                    continue
                # once a record has started arriving, finish it regardless of the deadline
                seconds = _sleep_for(None if stream is not None else deadline)
                if seconds is None:
                    return None
                yield seconds
            kind, payload = mb._pop(token, registered)
    finally:
        if stream is not None:
            mb._rstream_clear(token)  # cancelled mid-record: the rest becomes orphan chunks
        if registered:
            mb._bell_leave(DATA)


def get_many_proc(mb: Any, max_records: int, deadline: float | None) -> Wait:
    first = yield from get_proc(mb, deadline)
    if first is None:
        return []
    out = [first]
    if max_records > 1:
        out.extend(mb._pop_singles(max_records - 1))
    return out


def wait_readable_proc(mb: Any, deadline: float | None) -> Wait:
    if mb._data_ready(False):
        return True
    mb._bell_enter(DATA)
    try:
        while not mb._data_ready(True):
            seconds = _sleep_for(deadline)
            if seconds is None:
                return False
            yield seconds
        return True
    finally:
        mb._bell_leave(DATA)


# ---- entry points used by both classes ------------------------------------------------------


def as_buffer(data: Any) -> Any:
    """bytes stay as they are; other buffers become a flat unsigned-byte memoryview."""
    if type(data) is bytes:
        return data
    view = memoryview(data)
    if view.format != "B" or view.ndim != 1 or not view.c_contiguous:
        view = view.cast("B") if view.c_contiguous else memoryview(view.tobytes())
    return view


def check_max(max_records: int) -> int:
    if not isinstance(max_records, int) or max_records < 1:
        raise ValueError(f"max_records must be a positive integer (got {max_records!r})")
    return max_records


def put(mb: Any, data: Any, timeout: float | None) -> bool:
    return bool(_bell.run(mb._bell, put_proc(mb, data, deadline_of(timeout))))


def put_many(mb: Any, records: Iterable[Any], timeout: float | None) -> int:
    seq = records if isinstance(records, Sequence) else list(records)
    return int(_bell.run(mb._bell, put_many_proc(mb, seq, deadline_of(timeout))))


def get(mb: Any, timeout: float | None) -> bytes | None:
    out: bytes | None = _bell.run(mb._bell, get_proc(mb, deadline_of(timeout)))
    return out


def get_many(mb: Any, max_records: int, timeout: float | None) -> list[bytes]:
    out: list[bytes] = _bell.run(mb._bell, get_many_proc(mb, max_records, deadline_of(timeout)))
    return out


async def put_async(mb: Any, data: Any, timeout: float | None) -> bool:
    return bool(await _bell.run_async(mb._bell, put_proc(mb, as_buffer(data), deadline_of(timeout))))


async def get_async(mb: Any, timeout: float | None) -> bytes | None:
    out: bytes | None = await _bell.run_async(mb._bell, get_proc(mb, deadline_of(timeout)))
    return out


async def get_many_async(mb: Any, max_records: int, timeout: float | None) -> list[bytes]:
    out = mb._pop_singles(check_max(max_records))
    if out:
        return list(out)
    got: list[bytes] = await _bell.run_async(mb._bell, get_many_proc(mb, max_records, deadline_of(timeout)))
    return got


async def wait_readable(mb: Any, timeout: float | None) -> bool:
    return bool(await _bell.run_async(mb._bell, wait_readable_proc(mb, deadline_of(timeout))))
