"""PyMailbox: the pure-Python reference implementation of the shared-memory mailbox.

Same API, same byte layout and same lock as the Cython ``Mailbox`` (see ``layout.py``); the
two interoperate on one segment. Blocking, streaming and asyncio live in ``_ringops``.

Semantics
    ``put`` never grows the ring: it waits while full (``timeout=None`` forever, ``0`` fail
    fast) and returns False on timeout. A payload larger than :attr:`max_record` (a quarter
    of the capacity) is streamed as chunks and reassembled by one consumer, so any size is
    accepted; once a consumer has taken the first chunk, ``get`` finishes that record even if
    its timeout passes (the producer's own timeout or death abandons it instead). ``get``
    returns None on timeout. Records from one producer arrive in the order it put them.

Asyncio / uvloop
    ``await get_async()``, ``get_many_async()``, ``put_async()`` and ``wait_readable()`` park on
    an inotify fd registered with ``loop.add_reader`` (that fd is :meth:`fileno`), so the loop
    never blocks on an empty or full mailbox. The bell only rings while someone is registered
    as waiting, so a supervisor loop drains like this rather than watching the fd itself::

        while True:
            batch = mailbox.get_many(256, timeout=0)
            if not batch:
                await mailbox.wait_readable()
                continue
            handle(batch)
"""

from __future__ import annotations

import ctypes
import os
import struct
from collections.abc import Iterable, Sequence
from typing import Any

from . import _os, _ringops
from ._ringops import BUSY, DATA, EMPTY, FULL, LOST, OK, OWNED
from .layout import (
    DEFAULT_CAPACITY,
    HDR_BELL,
    HDR_LOCK,
    KIND_FIRST,
    KIND_LAST,
    KIND_MORE,
    KIND_PAD,
    KIND_SINGLE,
    MAILBOX_MAGIC,
    MB_CAPACITY,
    MB_COUNT,
    MB_DATA,
    MB_DATA_WAITERS,
    MB_HEAD,
    MB_RSTREAM_OWNER,
    MB_SPACE_WAITERS,
    MB_TAIL,
    MB_WSTREAM_OWNER,
    RECORD_HEADER,
    RECORD_HEADER_SIZE,
    mailbox_geometry,
)
from .segment import Segment, SegmentHandle

__all__ = ["PyMailbox"]

_U32 = struct.Struct("=I")
_U64 = struct.Struct("=Q")
_PAIR32 = struct.Struct("=II")
_PAIR64 = struct.Struct("=QQ")
_STREAMS = struct.Struct("=QQQ")  # writer, writer seq, reader
_COUNTERS = struct.Struct("=QQQ")  # count, puts, gets
_REC = RECORD_HEADER
_HDR = RECORD_HEADER_SIZE
_BELL_OFFSETS = (MB_DATA_WAITERS, MB_SPACE_WAITERS)


class PyMailbox(SegmentHandle):
    """A bounded multi-producer / multi-consumer ring of byte records in shared memory."""

    _noun = "mailbox"

    def __init__(self, segment: Segment) -> None:
        super().__init__(segment)
        self._enter()
        try:
            self._cap, max_record = _PAIR64.unpack_from(self._mm, MB_CAPACITY)
        finally:
            _os.mutex_unlock(self._lock)
        self._max_single = max_record - _HDR

    # ---- lifecycle -------------------------------------------------------------------------

    @classmethod
    def create(cls, name: str | None = None, capacity: int = DEFAULT_CAPACITY) -> PyMailbox:
        """Create ``/dev/shm/mn_<name>`` with a data area of ``capacity`` bytes (rounded up to 8)."""
        cap, max_record = mailbox_geometry(capacity)
        seg = Segment.create(name, MB_DATA + cap, MB_DATA)
        try:
            anchor = ctypes.c_char.from_buffer(seg.mm)
            _os.mutex_init(ctypes.addressof(anchor) + HDR_LOCK)
            del anchor
            _PAIR64.pack_into(seg.mm, MB_CAPACITY, cap, max_record)
            seg.publish(MAILBOX_MAGIC)
        except BaseException:
            seg.close()
            seg.unlink()
            raise
        return cls(seg)

    @classmethod
    def attach(cls, name: str) -> PyMailbox:
        """Open an existing mailbox by name (with or without the ``mn_`` prefix)."""
        return cls(Segment.attach(name, MAILBOX_MAGIC))

    @property
    def capacity(self) -> int:
        return int(self._cap)

    @property
    def max_record(self) -> int:
        """Largest payload stored as one record; larger ones are streamed in chunks."""
        return int(self._max_single)

    # ---- public operations ----------------------------------------------------------------

    def put(self, data: Any, timeout: float | None = None) -> bool:
        """Append one record; waits while full (None: forever, 0: not at all). False on timeout."""
        data = _ringops.as_buffer(data)
        if len(data) <= self._max_single:
            if self._push(KIND_SINGLE, data, 0, False) == OK:
                return True
            if timeout is not None and timeout <= 0:
                return False
        return _ringops.put(self, data, timeout)

    def put_many(self, records: Iterable[Any], timeout: float | None = None) -> int:
        """Append records in order; returns how many were put before a timeout."""
        seq = records if isinstance(records, Sequence) else list(records)
        done = self._push_singles(seq, 0)
        if done == len(seq):
            return done
        return done + _ringops.put_many(self, seq[done:], timeout)

    def get(self, timeout: float | None = None) -> bytes | None:
        """Take the oldest record; waits while empty. None on timeout."""
        out = self._pop_singles(1)
        if out:
            return out[0]
        return _ringops.get(self, timeout)

    def get_many(self, max_records: int, timeout: float | None = None) -> list[bytes]:
        """Take up to ``max_records``; waits only for the first one."""
        out = self._pop_singles(_ringops.check_max(max_records))
        if out:
            return out
        return _ringops.get_many(self, max_records, timeout)

    async def get_async(self, timeout: float | None = None) -> bytes | None:
        """:meth:`get` for an asyncio / uvloop loop: parks on :meth:`fileno`, never blocks it."""
        out = self._pop_singles(1)
        if out:
            return out[0]
        return await _ringops.get_async(self, timeout)

    async def get_many_async(self, max_records: int, timeout: float | None = None) -> list[bytes]:
        return await _ringops.get_many_async(self, max_records, timeout)

    async def put_async(self, data: Any, timeout: float | None = None) -> bool:
        data = _ringops.as_buffer(data)
        if len(data) <= self._max_single and self._push(KIND_SINGLE, data, 0, False) == OK:
            return True
        return await _ringops.put_async(self, data, timeout)

    async def wait_readable(self, timeout: float | None = None) -> bool:
        """Wait until a record is queued (True) or the timeout passes (False)."""
        return await _ringops.wait_readable(self, timeout)

    def stats(self) -> dict[str, int]:
        """Counters read under the lock: records queued, bytes used, capacity, waiters."""
        mm = self._mm
        self._enter()
        try:
            head, tail = _PAIR64.unpack_from(mm, MB_HEAD)
            count, puts, gets = _COUNTERS.unpack_from(mm, MB_COUNT)
            writer = _U64.unpack_from(mm, MB_WSTREAM_OWNER)[0]
            consumers = _U32.unpack_from(mm, MB_DATA_WAITERS)[0]
            producers = _U32.unpack_from(mm, MB_SPACE_WAITERS)[0]
        finally:
            _os.mutex_unlock(self._lock)
        return {
            "records": count,
            "bytes_used": tail - head,
            "capacity": self._cap,
            "max_record": self._max_single,
            "put_total": puts,
            "get_total": gets,
            "consumers_waiting": consumers,
            "producers_waiting": producers,
            "streaming": int(writer != 0),
        }

    # ---- critical sections -----------------------------------------------------------------

    def _repair(self) -> None:
        """After a holder died mid-section: recount the records between head and tail."""
        mm, cap = self._mm, self._cap
        head, tail = _PAIR64.unpack_from(mm, MB_HEAD)
        count, pos = 0, head
        while pos < tail:
            off = pos % cap
            length, kind, _ = _REC.unpack_from(mm, MB_DATA + off)
            if kind == KIND_PAD:
                pos += cap - off
                continue
            count += 1
            pos += (_HDR + length + 7) & ~7
        _U64.pack_into(mm, MB_COUNT, count)

    def _should_ring(self, offset: int) -> bool:
        waiters, rung = _PAIR32.unpack_from(self._mm, offset)
        if waiters and not rung:
            _U32.pack_into(self._mm, offset + 4, 1)
            return True
        return False

    def _ring(self) -> None:
        os.pwrite(self._fd, b"\0", HDR_BELL)

    def _write(self, kind: int, data: Any, size: int) -> bool:
        """Write one record if it fits (under the lock); publishes by storing tail last."""
        mm, cap = self._mm, self._cap
        head, tail = _PAIR64.unpack_from(mm, MB_HEAD)
        used = tail - head
        off = tail % cap
        room = cap - off
        if size > room:
            if used == 0:  # empty: skip to the start of the data area
                head = tail = tail + room
                _PAIR64.pack_into(mm, MB_HEAD, head, tail)
                off = 0
            elif used + room + size > cap:
                return False
            else:
                _REC.pack_into(mm, MB_DATA + off, room - _HDR, KIND_PAD, 0)
                tail += room
                off = 0
        elif used + size > cap:
            return False
        base = MB_DATA + off
        n = len(data)
        _REC.pack_into(mm, base, n, kind, 0)
        mm[base + _HDR : base + _HDR + n] = data
        count, puts = _PAIR64.unpack_from(mm, MB_COUNT)
        _PAIR64.pack_into(mm, MB_COUNT, count + 1, puts + 1)
        _U64.pack_into(mm, MB_TAIL, tail + size)
        return True

    def _push(self, kind: int, data: Any, token: int, park: bool) -> int:
        size = (_HDR + len(data) + 7) & ~7
        ring = False
        self._enter()
        try:
            writer = _U64.unpack_from(self._mm, MB_WSTREAM_OWNER)[0]
            if writer != token and (writer or kind != KIND_SINGLE):
                status = BUSY if kind == KIND_SINGLE else LOST
            else:
                status = OK if self._write(kind, data, size) else FULL
            if status == OK:
                ring = self._should_ring(MB_DATA_WAITERS)
            elif park:
                _U32.pack_into(self._mm, MB_SPACE_WAITERS + 4, 0)
        finally:
            _os.mutex_unlock(self._lock)
        if ring:
            self._ring()
        return status

    def _push_singles(self, records: Sequence[Any], start: int) -> int:
        done, limit = 0, self._max_single
        ring = False
        self._enter()
        try:
            if _U64.unpack_from(self._mm, MB_WSTREAM_OWNER)[0] == 0:
                for i in range(start, len(records)):
                    data = _ringops.as_buffer(records[i])
                    n = len(data)
                    if n > limit or not self._write(KIND_SINGLE, data, (_HDR + n + 7) & ~7):
                        break
                    done += 1
            if done:
                ring = self._should_ring(MB_DATA_WAITERS)
        finally:
            _os.mutex_unlock(self._lock)
        if ring:
            self._ring()
        return done

    def _take(self, head: int, size: int, taken: int) -> None:
        count, puts, gets = _COUNTERS.unpack_from(self._mm, MB_COUNT)
        _COUNTERS.pack_into(self._mm, MB_COUNT, count - taken, puts, gets + taken)
        _U64.pack_into(self._mm, MB_HEAD, head + size)

    def _pop(self, token: int, park: bool) -> tuple[int, bytes | None]:
        mm, cap = self._mm, self._cap
        result: tuple[int, bytes | None] = (EMPTY, None)
        freed = False
        self._enter()
        try:
            while True:
                head, tail = _PAIR64.unpack_from(mm, MB_HEAD)
                if head == tail:
                    break
                off = head % cap
                length, kind, _ = _REC.unpack_from(mm, MB_DATA + off)
                if kind == KIND_PAD:
                    _U64.pack_into(mm, MB_HEAD, head + cap - off)
                    freed = True
                    continue
                size = (_HDR + length + 7) & ~7
                if not KIND_SINGLE <= kind <= KIND_LAST or size > cap - off:
                    raise RuntimeError(f"mailbox {self.name} is corrupted at position {head}")
                reader = _U64.unpack_from(mm, MB_RSTREAM_OWNER)[0]
                if kind in (KIND_MORE, KIND_LAST):
                    if reader != token:
                        if reader:
                            result = (OWNED, None)
                            break
                        self._take(head, size, 1)  # orphan chunk of an abandoned stream
                        freed = True
                        continue
                    if kind == KIND_LAST:
                        _U64.pack_into(mm, MB_RSTREAM_OWNER, 0)
                elif kind == KIND_FIRST:
                    _U64.pack_into(mm, MB_RSTREAM_OWNER, token)
                elif reader == token:
                    _U64.pack_into(mm, MB_RSTREAM_OWNER, 0)
                base = MB_DATA + off + _HDR
                result = (kind, mm[base : base + length])
                self._take(head, size, 1)
                freed = True
                break
            ring = freed and self._should_ring(MB_SPACE_WAITERS)
            if park and result[0] <= 0:
                _U32.pack_into(mm, MB_DATA_WAITERS + 4, 0)
        finally:
            _os.mutex_unlock(self._lock)
        if ring:
            self._ring()
        return result

    def _pop_singles(self, limit: int) -> list[bytes]:
        mm, cap = self._mm, self._cap
        out: list[bytes] = []
        freed = False
        self._enter()
        try:
            head, tail = _PAIR64.unpack_from(mm, MB_HEAD)
            start = head
            while head != tail and len(out) < limit:
                off = head % cap
                length, kind, _ = _REC.unpack_from(mm, MB_DATA + off)
                if kind == KIND_PAD:
                    head += cap - off
                    continue
                if kind != KIND_SINGLE:
                    break
                base = MB_DATA + off + _HDR
                out.append(mm[base : base + length])
                head += (_HDR + length + 7) & ~7
            if head != start:
                self._take(head, 0, len(out))
                freed = True
            ring = freed and self._should_ring(MB_SPACE_WAITERS)
        finally:
            _os.mutex_unlock(self._lock)
        if ring:
            self._ring()
        return out

    def _data_ready(self, park: bool) -> bool:
        self._enter()
        try:
            head, tail = _PAIR64.unpack_from(self._mm, MB_HEAD)
            if head == tail and park:
                _U32.pack_into(self._mm, MB_DATA_WAITERS + 4, 0)
        finally:
            _os.mutex_unlock(self._lock)
        return head != tail

    def _wstream_begin(self, token: int, park: bool) -> int:
        mm = self._mm
        self._enter()
        try:
            writer, seq = _PAIR64.unpack_from(mm, MB_WSTREAM_OWNER)
            if writer == 0:
                seq += 1
                _PAIR64.pack_into(mm, MB_WSTREAM_OWNER, token, seq)
            else:
                seq = 0
                if park:
                    _U32.pack_into(mm, MB_SPACE_WAITERS + 4, 0)
        finally:
            _os.mutex_unlock(self._lock)
        return int(seq)

    def _clear_owner(self, offset: int, token: int, bells: tuple[int, ...]) -> bool:
        rings = False
        self._enter()
        try:
            cleared = _U64.unpack_from(self._mm, offset)[0] == token
            if cleared:
                _U64.pack_into(self._mm, offset, 0)
                for bell in bells:
                    rings = self._should_ring(bell) or rings
        finally:
            _os.mutex_unlock(self._lock)
        if rings:
            self._ring()
        return cleared

    def _wstream_clear(self, token: int) -> bool:
        return self._clear_owner(MB_WSTREAM_OWNER, token, _BELL_OFFSETS)

    def _rstream_clear(self, token: int) -> bool:
        return self._clear_owner(MB_RSTREAM_OWNER, token, (MB_DATA_WAITERS,))

    def _stream_state(self) -> tuple[int, int, int]:
        self._enter()
        try:
            writer, seq, reader = _STREAMS.unpack_from(self._mm, MB_WSTREAM_OWNER)
        finally:
            _os.mutex_unlock(self._lock)
        return writer, seq, reader

    def _bell_enter(self, which: int) -> None:
        self._add_waiter(_BELL_OFFSETS[which], 1)

    def _bell_leave(self, which: int) -> None:
        self._add_waiter(_BELL_OFFSETS[which], -1)

    def _add_waiter(self, offset: int, delta: int) -> None:
        self._enter()
        try:
            waiters = _U32.unpack_from(self._mm, offset)[0]
            _U32.pack_into(self._mm, offset, max(0, waiters + delta))
        finally:
            _os.mutex_unlock(self._lock)

    def _spin(self, which: int) -> bool:
        """A token spin before parking: pure Python only yields the CPU once."""
        os.sched_yield()
        if which == DATA and self._mm is not None:
            head, tail = _PAIR64.unpack_from(self._mm, MB_HEAD)
            return bool(head != tail)
        return False
