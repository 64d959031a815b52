"""PySlotTable: the pure-Python reference implementation of the shared-memory slot table.

Per-pool capacity and leases (executor-contract §13) in one segment: any process reads
``stats()`` without a round trip; grants follow one FIFO of tickets per pool with head-of-line
blocking. Same API, byte layout and lock as the Cython ``SlotTable`` (see ``layout.py``).
"""

from __future__ import annotations

import ctypes
import os
import struct
from collections.abc import Mapping
from typing import Any

from . import _os, _slotops
from ._slotops import ERR_DUPLICATE, ERR_FULL, ERR_NONE, ERR_TOO_MANY, FORCE, TRY
from .layout import (
    DEFAULT_MAX_LEASES,
    ENTRY_ACQUIRED,
    ENTRY_ID,
    ENTRY_SIZE,
    ENTRY_STATE,
    ENTRY_STRUCT,
    HDR_BELL,
    HDR_LOCK,
    LEASE_ID_MAX,
    MAX_POOLS,
    POOL_CAPACITY,
    POOL_NAME_MAX,
    POOL_SIZE,
    POOL_STRUCT,
    SLOTS_MAGIC,
    ST_HWM,
    ST_NEXT_TICKET,
    ST_NPOOLS,
    ST_POOLS,
    ST_RUNG,
    ST_WAITERS,
    STATE_FREE,
    STATE_GRANTED,
    STATE_QUEUED,
    slots_entries_offset,
    slots_segment_size,
)
from .segment import Segment, SegmentHandle

__all__ = ["PySlotTable"]

_U32 = struct.Struct("=I")
_U64 = struct.Struct("=Q")
_PAIR32 = struct.Struct("=II")
_COUNTS = struct.Struct("=IIII")  # capacity, in_use, active, queued
_ENTRY = ENTRY_STRUCT
_HEAD = struct.Struct("=BBHIIIQ")  # entry prefix up to the ticket


def check_pools(pools: Mapping[str, int]) -> list[tuple[str, bytes, int]]:
    """Validate ``{name: capacity}`` for a new table (shared by both builds)."""
    if not isinstance(pools, Mapping) or not pools:
        raise ValueError("pools must be a non-empty mapping of pool name to capacity")
    if len(pools) > MAX_POOLS:
        raise ValueError(f"a slot table holds at most {MAX_POOLS} pools (got {len(pools)})")
    out = []
    for name, capacity in pools.items():
        raw = name.encode("utf-8") if isinstance(name, str) else b""
        if not raw or len(raw) > POOL_NAME_MAX:
            raise ValueError(f"pool name {name!r} must be a non-empty str of at most {POOL_NAME_MAX} UTF-8 bytes")
        out.append((name, raw, _slotops.check_capacity(capacity)))
    return out


def check_max_leases(max_leases: Any) -> int:
    if not isinstance(max_leases, int) or isinstance(max_leases, bool) or not 1 <= max_leases <= 1 << 24:
        raise ValueError(f"max_leases must be an integer from 1 to {1 << 24} (got {max_leases!r})")
    return max_leases


class PySlotTable(SegmentHandle):
    """Per-pool slot capacity and leases in shared memory, FIFO across processes."""

    _noun = "slot table"

    def __init__(self, segment: Segment) -> None:
        super().__init__(segment)
        self._enter()
        try:
            npools, self._max = _PAIR32.unpack_from(self._mm, ST_NPOOLS)
            names = []
            for i in range(npools):
                length, raw = POOL_STRUCT.unpack_from(self._mm, ST_POOLS + i * POOL_SIZE)[:2]
                names.append(raw[:length].decode("utf-8"))
        finally:
            _os.mutex_unlock(self._lock)
        self._names = names
        self._index = {name: i for i, name in enumerate(names)}
        self._entries = slots_entries_offset(npools)

    # ---- lifecycle -------------------------------------------------------------------------

    @classmethod
    def create(cls, name: str | None, pools: Mapping[str, int], max_leases: int = DEFAULT_MAX_LEASES) -> PySlotTable:
        """Create ``/dev/shm/mn_<name>`` holding ``pools`` (name -> capacity) and up to
        ``max_leases`` entries (granted leases plus queued requests)."""
        specs = check_pools(pools)
        check_max_leases(max_leases)
        seg = Segment.create(name, slots_segment_size(len(specs), max_leases), slots_entries_offset(len(specs)))
        try:
            anchor = ctypes.c_char.from_buffer(seg.mm)
            _os.mutex_init(ctypes.addressof(anchor) + HDR_LOCK)
            del anchor
            _PAIR32.pack_into(seg.mm, ST_NPOOLS, len(specs), max_leases)
            _U64.pack_into(seg.mm, ST_NEXT_TICKET, 1)
            for i, (_, raw, capacity) in enumerate(specs):
                POOL_STRUCT.pack_into(seg.mm, ST_POOLS + i * POOL_SIZE, len(raw), raw, capacity, 0, 0, 0)
            seg.publish(SLOTS_MAGIC)
        except BaseException:
            seg.close()
            seg.unlink()
            raise
        return cls(seg)

    @classmethod
    def attach(cls, name: str) -> PySlotTable:
        return cls(Segment.attach(name, SLOTS_MAGIC))

    @property
    def pools(self) -> list[str]:
        return list(self._names)

    @property
    def max_leases(self) -> int:
        return int(self._max)

    # ---- public operations ----------------------------------------------------------------

    def set_capacity(self, pool: str, capacity: int) -> None:
        """Change a pool's effective capacity; running leases are never revoked."""
        index = self._pool(pool)
        capacity = _slotops.check_capacity(capacity)
        self._enter()
        try:
            _U32.pack_into(self._mm, self._pool_off(index) + POOL_CAPACITY, capacity)
            ring = self._grant(index)
        finally:
            _os.mutex_unlock(self._lock)
        if ring:
            self._ring()

    def try_acquire(self, pool: str, slots: int, owner_pid: int, lease_id: bytes | str) -> bool:
        """Grant now if the pool's queue is empty and the slots fit; never queues."""
        slots, owner, key = _slotops.check_request(self, pool, slots, owner_pid, lease_id)
        return bool(self._enqueue(pool, slots, owner, key, TRY)[0])

    def enqueue(self, pool: str, slots: int, owner_pid: int, lease_id: bytes | str) -> bool:
        """Grant now (True) or join the pool's FIFO (False); follow up with :meth:`poll`."""
        slots, owner, key = _slotops.check_request(self, pool, slots, owner_pid, lease_id)
        return bool(self._enqueue(pool, slots, owner, key, _slotops.QUEUE)[0])

    def acquire(
        self, pool: str, slots: int, owner_pid: int, lease_id: bytes | str, timeout: float | None = None
    ) -> bool:
        """Wait in FIFO order for ``slots``; False after ``timeout`` (the request is withdrawn)."""
        return _slotops.acquire(self, pool, slots, owner_pid, lease_id, timeout)

    async def acquire_async(
        self, pool: str, slots: int, owner_pid: int, lease_id: bytes | str, timeout: float | None = None
    ) -> bool:
        """:meth:`acquire` for an asyncio / uvloop loop (parks on :meth:`fileno`)."""
        return await _slotops.acquire_async(self, pool, slots, owner_pid, lease_id, timeout)

    def poll(self, lease_id: bytes | str) -> str | None:
        """``"granted"``, ``"queued"`` or None (unknown / released / withdrawn)."""
        key = _slotops.lease_key(lease_id)
        self._enter()
        try:
            index = self._find(key)
            state = self._mm[self._entries + index * ENTRY_SIZE] if index >= 0 else STATE_FREE
        finally:
            _os.mutex_unlock(self._lock)
        return _slotops.STATE_NAMES.get(state)

    def cancel(self, lease_id: bytes | str) -> bool:
        """Withdraw a queued request; False when it is not queued (granted ones need release)."""
        return self._drop(_slotops.lease_key(lease_id), only_queued=True)

    def release(self, lease_id: bytes | str) -> bool:
        """Free a lease's slots (or withdraw a queued request) and grant from the queue heads."""
        return self._drop(_slotops.lease_key(lease_id), only_queued=False)

    def record_grant(self, pool: str, lease_id: bytes | str, slots: int, owner_pid: int | None = None) -> None:
        """Mirror a grant decided elsewhere (``LeaseManager.attach_table``): no queue, no cap."""
        owner = os.getpid() if owner_pid is None else owner_pid
        slots, owner, key = _slotops.check_request(self, pool, slots, owner, lease_id)
        self._enqueue(pool, slots, owner, key, FORCE)

    def record_release(self, lease_id: bytes | str) -> bool:
        return self.release(lease_id)

    def stats(self) -> dict[str, dict[str, int]]:
        """``{pool: {capacity, in_use, available, queued, active}}`` (executor-contract §13)."""
        self._enter()
        try:
            counts = [_COUNTS.unpack_from(self._mm, self._pool_off(i) + POOL_CAPACITY) for i in range(len(self._names))]
        finally:
            _os.mutex_unlock(self._lock)
        return {
            name: {
                "capacity": cap,
                "in_use": in_use,
                "available": max(cap - in_use, 0),
                "queued": queued,
                "active": active,
            }
            for name, (cap, in_use, active, queued) in zip(self._names, counts, strict=True)
        }

    def leases(self) -> list[dict[str, Any]]:
        """Granted leases in grant-ticket order."""
        return [r for r in self._records() if r["state"] == "granted"]

    def queue(self) -> list[dict[str, Any]]:
        """Waiting requests in FIFO order (all pools)."""
        return [r for r in self._records() if r["state"] == "queued"]

    def reclaim_dead(self) -> list[dict[str, Any]]:
        """Release every lease and drop every waiter whose owner pid no longer runs."""
        return _slotops.reclaim_dead(self)

    # ---- helpers ---------------------------------------------------------------------------

    def _pool(self, pool: str) -> int:
        if self._seg is None:
            raise ValueError("slot table is closed")
        index = self._index.get(pool) if isinstance(pool, str) else None
        if index is None:
            raise _slotops.unknown_pool(pool)
        return index

    @staticmethod
    def _pool_off(index: int) -> int:
        return ST_POOLS + index * POOL_SIZE

    def _ring(self) -> None:
        os.pwrite(self._fd, b"\0", HDR_BELL)

    def _entry(self, index: int) -> tuple[Any, ...]:
        return _ENTRY.unpack_from(self._mm, self._entries + index * ENTRY_SIZE)

    def _records(self) -> list[dict[str, Any]]:
        self._enter()
        try:
            hwm = _U32.unpack_from(self._mm, ST_HWM)[0]
            rows = [self._entry(i) for i in range(hwm)]
        finally:
            _os.mutex_unlock(self._lock)
        rows = sorted((r for r in rows if r[0] != STATE_FREE), key=lambda r: r[6])
        return [
            _slotops.record(raw[:id_len], self._names[pool], slots, owner, req, acq, state)
            for state, id_len, pool, slots, owner, _flags, _ticket, req, acq, raw in rows
        ]

    # ---- critical sections (called with the lock held) -------------------------------------

    def _repair(self) -> None:
        """After a holder died mid-section: recompute the pool counters and the high-water mark."""
        mm = self._mm
        npools = _U32.unpack_from(mm, ST_NPOOLS)[0]
        totals = [[0, 0, 0] for _ in range(npools)]
        hwm = 0
        for i in range(self._max):
            state, _id_len, pool, slots = _HEAD.unpack_from(mm, self._entries + i * ENTRY_SIZE)[:4]
            if state == STATE_FREE or pool >= npools:
                continue
            hwm = i + 1
            if state == STATE_GRANTED:
                totals[pool][0] += slots
                totals[pool][1] += 1
            else:
                totals[pool][2] += 1
        for p, (in_use, active, queued) in enumerate(totals):
            cap = _U32.unpack_from(mm, self._pool_off(p) + POOL_CAPACITY)[0]
            _COUNTS.pack_into(mm, self._pool_off(p) + POOL_CAPACITY, cap, in_use, active, queued)
        _U32.pack_into(mm, ST_HWM, hwm)

    def _find(self, key: bytes) -> int:
        mm, base, n = self._mm, self._entries, len(key)
        for i in range(_U32.unpack_from(mm, ST_HWM)[0]):
            off = base + i * ENTRY_SIZE
            if mm[off] != STATE_FREE and mm[off + 1] == n and mm[off + ENTRY_ID : off + ENTRY_ID + n] == key:
                return i
        return -1

    def _alloc(self) -> int:
        mm, base = self._mm, self._entries
        hwm = _U32.unpack_from(mm, ST_HWM)[0]
        for i in range(hwm):
            if mm[base + i * ENTRY_SIZE] == STATE_FREE:
                return i
        if hwm >= self._max:
            return -1
        _U32.pack_into(mm, ST_HWM, hwm + 1)
        return int(hwm)

    def _free(self, index: int) -> None:
        mm, base = self._mm, self._entries
        mm[base + index * ENTRY_SIZE + ENTRY_STATE] = STATE_FREE
        hwm = _U32.unpack_from(mm, ST_HWM)[0]
        while hwm > 0 and mm[base + (hwm - 1) * ENTRY_SIZE] == STATE_FREE:
            hwm -= 1
        _U32.pack_into(mm, ST_HWM, hwm)

    def _add(self, pool: int, in_use: int = 0, active: int = 0, queued: int = 0) -> None:
        off = self._pool_off(pool) + POOL_CAPACITY
        cap, u, a, q = _COUNTS.unpack_from(self._mm, off)
        _COUNTS.pack_into(self._mm, off, cap, u + in_use, a + active, q + queued)

    def _grant(self, pool: int) -> bool:
        """Grant from the pool's queue head while it fits; True when waiters should be rung."""
        mm, base = self._mm, self._entries
        granted = 0
        while True:
            cap, in_use, _active, queued = _COUNTS.unpack_from(mm, self._pool_off(pool) + POOL_CAPACITY)
            if not queued:
                break
            head, head_ticket, head_slots = -1, 0, 0
            for i in range(_U32.unpack_from(mm, ST_HWM)[0]):
                state, _l, p, slots, _o, _f, ticket = _HEAD.unpack_from(mm, base + i * ENTRY_SIZE)
                if state == STATE_QUEUED and p == pool and (head < 0 or ticket < head_ticket):
                    head, head_ticket, head_slots = i, ticket, slots
            if head < 0 or in_use + head_slots > cap:
                break  # strict FIFO: nothing behind a head that does not fit
            _U64.pack_into(mm, base + head * ENTRY_SIZE + ENTRY_ACQUIRED, _os.wall_ms())
            mm[base + head * ENTRY_SIZE + ENTRY_STATE] = STATE_GRANTED
            self._add(pool, in_use=head_slots, active=1, queued=-1)
            granted += 1
        if not granted:
            return False
        waiters, rung = _PAIR32.unpack_from(mm, ST_WAITERS)
        if waiters and not rung:
            _U32.pack_into(mm, ST_RUNG, 1)
            return True
        return False

    # ---- primitives used by _slotops ---------------------------------------------------------

    def _enqueue(self, pool: str, slots: int, owner: int, key: bytes, mode: int) -> tuple[bool, int, int]:
        index = self._pool(pool)
        mm = self._mm
        error, capacity, result = ERR_NONE, 0, (False, -1, 0)
        self._enter()
        try:
            capacity, in_use, _active, queued = _COUNTS.unpack_from(mm, self._pool_off(index) + POOL_CAPACITY)
            fits = mode == FORCE or (queued == 0 and in_use + slots <= capacity)
            if mode != FORCE and slots > capacity:
                error = ERR_TOO_MANY
            elif self._find(key) >= 0:
                error = ERR_DUPLICATE
            elif fits or mode != TRY:
                slot = self._alloc()
                if slot < 0:
                    error = ERR_FULL
                else:
                    ticket = _U64.unpack_from(mm, ST_NEXT_TICKET)[0]
                    _U64.pack_into(mm, ST_NEXT_TICKET, ticket + 1)
                    now = _os.wall_ms()
                    state = STATE_GRANTED if fits else STATE_QUEUED
                    raw = key.ljust(LEASE_ID_MAX, b"\0")
                    _ENTRY.pack_into(
                        mm,
                        self._entries + slot * ENTRY_SIZE,
                        0,
                        len(key),
                        index,
                        slots,
                        owner,
                        0,
                        ticket,
                        now,
                        now if fits else 0,
                        raw,
                    )
                    mm[self._entries + slot * ENTRY_SIZE + ENTRY_STATE] = state  # state last
                    if fits:
                        self._add(index, in_use=slots, active=1)
                    else:
                        self._add(index, queued=1)
                    result = (fits, slot, ticket)
        finally:
            _os.mutex_unlock(self._lock)
        _slotops.raise_error(error, self, slots, capacity, key)
        return result

    def _entry_state(self, index: int, ticket: int, park: bool) -> int:
        self._enter()
        try:
            state, *_rest, found = _HEAD.unpack_from(self._mm, self._entries + index * ENTRY_SIZE)
            if found != ticket:
                state = STATE_FREE
            elif state == STATE_QUEUED and park:
                _U32.pack_into(self._mm, ST_RUNG, 0)
        finally:
            _os.mutex_unlock(self._lock)
        return int(state)

    def _remove(self, index: int, grant: bool = True) -> bool:
        """Drop entry ``index`` (lock held); True when grants were made and should ring."""
        state, _l, pool, slots = _HEAD.unpack_from(self._mm, self._entries + index * ENTRY_SIZE)[:4]
        if state == STATE_GRANTED:
            self._add(pool, in_use=-slots, active=-1)
        else:
            self._add(pool, queued=-1)
        self._free(index)
        return self._grant(pool) if grant else False

    def _drop(self, key: bytes, only_queued: bool) -> bool:
        ring = done = False
        self._enter()
        try:
            index = self._find(key)
            if index >= 0 and not (only_queued and self._mm[self._entries + index * ENTRY_SIZE] != STATE_QUEUED):
                ring, done = self._remove(index), True
        finally:
            _os.mutex_unlock(self._lock)
        if ring:
            self._ring()
        return done

    def _withdraw(self, index: int, ticket: int) -> bool:
        ring = granted = False
        self._enter()
        try:
            state, *_rest, found = _HEAD.unpack_from(self._mm, self._entries + index * ENTRY_SIZE)
            if found == ticket and state == STATE_GRANTED:
                granted = True
            elif found == ticket and state == STATE_QUEUED:
                ring = self._remove(index)
        finally:
            _os.mutex_unlock(self._lock)
        if ring:
            self._ring()
        return granted

    def _release_entry(self, index: int, ticket: int) -> None:
        ring = False
        self._enter()
        try:
            state, *_rest, found = _HEAD.unpack_from(self._mm, self._entries + index * ENTRY_SIZE)
            if found == ticket and state != STATE_FREE:
                ring = self._remove(index)
        finally:
            _os.mutex_unlock(self._lock)
        if ring:
            self._ring()

    def _snapshot(self) -> list[tuple[int, int, int, int]]:
        """``(index, ticket, owner pid, requested ms)`` of every live entry."""
        self._enter()
        try:
            hwm = _U32.unpack_from(self._mm, ST_HWM)[0]
            rows = [(i, self._entry(i)) for i in range(hwm)]
        finally:
            _os.mutex_unlock(self._lock)
        return [(i, r[6], r[4], r[7]) for i, r in rows if r[0] != STATE_FREE]

    def _remove_dead(self, victims: list[tuple[int, int]]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        ring = False
        self._enter()
        try:
            pools = set()
            for index, ticket in victims:
                state, id_len, pool, slots, owner, _f, found, req, acq, raw = self._entry(index)
                if found != ticket or state == STATE_FREE:
                    continue
                out.append(_slotops.record(raw[:id_len], self._names[pool], slots, owner, req, acq, state))
                self._remove(index, grant=False)  # every victim goes before anyone is granted
                pools.add(pool)
            for pool in sorted(pools):
                ring = self._grant(pool) or ring
        finally:
            _os.mutex_unlock(self._lock)
        if ring:
            self._ring()
        return out

    def _bell_enter(self) -> None:
        self._add_waiter(1)

    def _bell_leave(self) -> None:
        self._add_waiter(-1)

    def _add_waiter(self, delta: int) -> None:
        self._enter()
        try:
            waiters = _U32.unpack_from(self._mm, ST_WAITERS)[0]
            _U32.pack_into(self._mm, ST_WAITERS, max(0, waiters + delta))
        finally:
            _os.mutex_unlock(self._lock)
