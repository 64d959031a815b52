# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""SlotTable: the Cython implementation of the shared-memory slot table.

Same API, byte layout and lock as ``slots.PySlotTable`` (offsets come from ``layout.py`` at
import); every critical section runs in C, waiting is the shared generator of ``_slotops``.
"""

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcmp, memcpy, memset
from posix.time cimport CLOCK_REALTIME, clock_gettime, timespec

from mncore._fast._shm cimport mn_mutex_init, mn_mutex_size, mn_ring, mn_unlock, shm_lock, u16, u32, u64

import os

from mncore._fast import _slotops, layout
from mncore._fast._bell import Bell
from mncore._fast.segment import Segment, unlink_segment
from mncore._fast.slots import check_max_leases, check_pools

cdef Py_ssize_t HDR_BELL = layout.HDR_BELL
cdef Py_ssize_t HDR_LOCK = layout.HDR_LOCK
cdef Py_ssize_t ST_NPOOLS = layout.ST_NPOOLS
cdef Py_ssize_t ST_MAX_ENTRIES = layout.ST_MAX_ENTRIES
cdef Py_ssize_t ST_HWM = layout.ST_HWM
cdef Py_ssize_t ST_WAITERS = layout.ST_WAITERS
cdef Py_ssize_t ST_RUNG = layout.ST_RUNG
cdef Py_ssize_t ST_NEXT_TICKET = layout.ST_NEXT_TICKET
cdef Py_ssize_t ST_POOLS = layout.ST_POOLS
cdef Py_ssize_t POOL_SIZE = layout.POOL_SIZE
cdef Py_ssize_t POOL_NAME_MAX = layout.POOL_NAME_MAX
cdef Py_ssize_t POOL_CAPACITY = layout.POOL_CAPACITY
cdef Py_ssize_t POOL_IN_USE = layout.POOL_IN_USE
cdef Py_ssize_t POOL_ACTIVE = layout.POOL_ACTIVE
cdef Py_ssize_t POOL_QUEUED = layout.POOL_QUEUED
cdef Py_ssize_t ENTRY_SIZE = layout.ENTRY_SIZE
cdef Py_ssize_t E_STATE = layout.ENTRY_STATE
cdef Py_ssize_t E_ID_LEN = layout.ENTRY_ID_LEN
cdef Py_ssize_t E_POOL = layout.ENTRY_POOL
cdef Py_ssize_t E_SLOTS = layout.ENTRY_SLOTS
cdef Py_ssize_t E_OWNER = layout.ENTRY_OWNER
cdef Py_ssize_t E_FLAGS = layout.ENTRY_FLAGS
cdef Py_ssize_t E_TICKET = layout.ENTRY_TICKET
cdef Py_ssize_t E_REQUESTED = layout.ENTRY_REQUESTED
cdef Py_ssize_t E_ACQUIRED = layout.ENTRY_ACQUIRED
cdef Py_ssize_t E_ID = layout.ENTRY_ID
cdef Py_ssize_t ID_MAX = layout.LEASE_ID_MAX
cdef int FREE = layout.STATE_FREE
cdef int QUEUED = layout.STATE_QUEUED
cdef int GRANTED = layout.STATE_GRANTED
cdef bytes MAGIC = layout.SLOTS_MAGIC
cdef int TRY = _slotops.TRY
cdef int FORCE = _slotops.FORCE
cdef int ERR_NONE = _slotops.ERR_NONE
cdef int ERR_TOO_MANY = _slotops.ERR_TOO_MANY
cdef int ERR_DUPLICATE = _slotops.ERR_DUPLICATE
cdef int ERR_FULL = _slotops.ERR_FULL

if mn_mutex_size() > layout.LOCK_SIZE:
    raise ImportError(f"pthread_mutex_t is {mn_mutex_size()} bytes; the layout reserves {layout.LOCK_SIZE}")


cdef inline bytes fast_key(object lease_id):
    """The stored lease id; the shared check raises the exact error for anything unusual."""
    cdef bytes key
    if type(lease_id) is str:
        key = (<str>lease_id).encode("utf-8", "surrogateescape")
    elif type(lease_id) is bytes:
        key = <bytes>lease_id
    else:
        return _slotops.lease_key(lease_id)
    if 0 < len(key) <= ID_MAX:
        return key
    return _slotops.lease_key(lease_id)


cdef inline bint plain_u32(object value) noexcept:
    return type(value) is int and 0 < value <= 0xFFFFFFFF


cdef inline uint64_t wall_ms() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_REALTIME, &ts)
    return <uint64_t>ts.tv_sec * 1000 + <uint64_t>(ts.tv_nsec // 1000000)


cdef class SlotTable:
    """Per-pool slot capacity and leases in shared memory, FIFO across processes."""

    def __cinit__(self):
        self._base = NULL
        self._fd = -1

    def __init__(self, segment):
        cdef unsigned char[::1] view = segment.mm
        cdef Py_ssize_t npools, i
        cdef unsigned char *p
        self._seg = segment
        self._name = segment.name
        self._fd = segment.fd
        self._view = view
        self._base = &view[0]
        self._bell = Bell(segment.path)
        self._enter()
        npools = u32(self._base + ST_NPOOLS)[0]
        self._max = u32(self._base + ST_MAX_ENTRIES)[0]
        self._leave()
        self._names = []
        for i in range(npools):
            p = self._poolp(i)
            self._names.append((<char *>p + 2)[:u16(p)[0]].decode("utf-8"))
        self._index = {name: i for i, name in enumerate(self._names)}
        self._entries = layout.slots_entries_offset(npools)

    # ---- lifecycle -------------------------------------------------------------------------

    @classmethod
    def create(cls, name, pools, max_leases=layout.DEFAULT_MAX_LEASES):
        """Create ``/dev/shm/mn_<name>`` holding ``pools`` (name -> capacity) and up to
        ``max_leases`` entries (granted leases plus queued requests)."""
        cdef unsigned char[::1] view
        cdef unsigned char *b
        cdef unsigned char *p
        cdef int rc
        cdef Py_ssize_t i
        cdef bytes raw
        specs = check_pools(pools)
        check_max_leases(max_leases)
        body = layout.slots_entries_offset(len(specs))
        seg = Segment.create(name, layout.slots_segment_size(len(specs), max_leases), body)
        try:
            view = seg.mm
            b = &view[0]
            rc = mn_mutex_init(b + HDR_LOCK)
            if rc:
                raise OSError(rc, f"pthread_mutex_init failed: {os.strerror(rc)}")
            u32(b + ST_NPOOLS)[0] = len(specs)
            u32(b + ST_MAX_ENTRIES)[0] = max_leases
            u64(b + ST_NEXT_TICKET)[0] = 1
            for i in range(len(specs)):
                raw = specs[i][1]
                p = b + ST_POOLS + i * POOL_SIZE
                u16(p)[0] = len(raw)
                memcpy(p + 2, <char *>raw, len(raw))
                u32(p + POOL_CAPACITY)[0] = specs[i][2]
            view = None
            seg.publish(MAGIC)
        except BaseException:
            view = None
            seg.close()
            seg.unlink()
            raise
        return cls(seg)

    @classmethod
    def attach(cls, name):
        return cls(Segment.attach(name, MAGIC))

    @property
    def name(self):
        return self._name

    @property
    def pools(self):
        return list(self._names)

    @property
    def max_leases(self):
        return self._max

    def close(self):
        if self._seg is None:
            return
        seg, self._seg = self._seg, None
        self._bell.close()
        self._base = NULL
        self._view = None
        seg.close()

    def unlink(self):
        unlink_segment(self._name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __reduce__(self):
        return (type(self).attach, (self._name,))

    def __repr__(self):
        return f"<SlotTable {self._name}{'' if self._base != NULL else ' (closed)'}>"

    def fileno(self):
        """An fd that becomes readable when grants are made (for ``loop.add_reader``)."""
        if self._base == NULL:
            raise ValueError("slot table is closed")
        return self._bell.fileno()

    # ---- public operations ----------------------------------------------------------------

    def set_capacity(self, pool, capacity):
        """Change a pool's effective capacity; running leases are never revoked."""
        cdef Py_ssize_t index = self._pool(pool)
        cdef uint32_t cap = _slotops.check_capacity(capacity)
        cdef bint ring
        self._enter()
        u32(self._poolp(index) + POOL_CAPACITY)[0] = cap
        ring = self._grant(index)
        self._leave()
        self._ring_after(ring)

    def try_acquire(self, pool, slots, owner_pid, lease_id):
        """Grant now if the pool's queue is empty and the slots fit; never queues."""
        return self._request(pool, slots, owner_pid, lease_id, TRY)

    def enqueue(self, pool, slots, owner_pid, lease_id):
        """Grant now (True) or join the pool's FIFO (False); follow up with :meth:`poll`."""
        return self._request(pool, slots, owner_pid, lease_id, _slotops.QUEUE)

    cdef bint _request(self, object pool, object slots, object owner_pid, object lease_id, int mode) except -1:
        index = self._index.get(pool) if self._base != NULL and type(pool) is str else None
        if index is None or not plain_u32(slots) or not plain_u32(owner_pid):
            slots, owner_pid, _ = _slotops.check_request(self, pool, slots, owner_pid, lease_id)
            index = self._pool(pool)
        return self._enqueue_c(index, slots, owner_pid, fast_key(lease_id), mode)[0]

    def acquire(self, pool, slots, owner_pid, lease_id, timeout=None):
        """Wait in FIFO order for ``slots``; False after ``timeout`` (the request is withdrawn)."""
        if self._request(pool, slots, owner_pid, lease_id, TRY):  # queue empty and it fits
            return True
        if timeout is not None and timeout <= 0:
            return False
        return _slotops.acquire(self, pool, slots, owner_pid, lease_id, timeout)

    async def acquire_async(self, pool, slots, owner_pid, lease_id, timeout=None):
        """:meth:`acquire` for an asyncio / uvloop loop (parks on :meth:`fileno`)."""
        if self._request(pool, slots, owner_pid, lease_id, TRY):
            return True
        if timeout is not None and timeout <= 0:
            return False
        return await _slotops.acquire_async(self, pool, slots, owner_pid, lease_id, timeout)

    def poll(self, lease_id):
        """``"granted"``, ``"queued"`` or None (unknown / released / withdrawn)."""
        cdef bytes key = fast_key(lease_id)
        cdef Py_ssize_t index
        cdef int state = FREE
        self._enter()
        index = self._find(key)
        if index >= 0:
            state = self._entry(index)[E_STATE]
        self._leave()
        return _slotops.STATE_NAMES.get(state)

    def cancel(self, lease_id):
        """Withdraw a queued request; False when it is not queued (granted ones need release)."""
        return self._drop(fast_key(lease_id), True)

    def release(self, lease_id):
        """Free a lease's slots (or withdraw a queued request) and grant from the queue heads."""
        return self._drop(fast_key(lease_id), False)

    def record_grant(self, pool, lease_id, slots, owner_pid=None):
        """Mirror a grant decided elsewhere (``LeaseManager.attach_table``): no queue, no cap."""
        owner = os.getpid() if owner_pid is None else owner_pid
        slots, owner, key = _slotops.check_request(self, pool, slots, owner, lease_id)
        self._enqueue(pool, slots, owner, key, FORCE)

    def record_release(self, lease_id):
        return self.release(lease_id)

    def stats(self):
        """``{pool: {capacity, in_use, available, queued, active}}`` (executor-contract §13)."""
        cdef Py_ssize_t i, n = len(self._names)
        cdef unsigned char *p
        counts = []
        self._enter()
        try:
            for i in range(n):
                p = self._poolp(i)
                counts.append((u32(p + POOL_CAPACITY)[0], u32(p + POOL_IN_USE)[0],
                               u32(p + POOL_ACTIVE)[0], u32(p + POOL_QUEUED)[0]))
        finally:
            self._leave()
        return {
            name: {
                "capacity": cap,
                "in_use": in_use,
                "available": max(cap - in_use, 0),
                "queued": queued,
                "active": active,
            }
            for name, (cap, in_use, active, queued) in zip(self._names, counts)
        }

    def leases(self):
        """Granted leases in grant-ticket order."""
        return [r for r in self._records() if r["state"] == "granted"]

    def queue(self):
        """Waiting requests in FIFO order (all pools)."""
        return [r for r in self._records() if r["state"] == "queued"]

    def reclaim_dead(self):
        """Release every lease and drop every waiter whose owner pid no longer runs."""
        return _slotops.reclaim_dead(self)

    # ---- helpers ---------------------------------------------------------------------------

    def _pool(self, pool):
        if self._base == NULL:
            raise ValueError("slot table is closed")
        index = self._index.get(pool) if isinstance(pool, str) else None
        if index is None:
            raise _slotops.unknown_pool(pool)
        return index

    cdef int _enter(self) except -1:
        if self._base == NULL:
            raise ValueError("slot table is closed")
        if shm_lock(self._base + HDR_LOCK) == 1:
            self._repair()
        return 0

    cdef void _leave(self) noexcept:
        mn_unlock(self._base + HDR_LOCK)

    cdef void _ring_after(self, bint ring) noexcept:
        if ring:
            with nogil:
                mn_ring(self._fd, HDR_BELL)

    cdef unsigned char *_entry(self, Py_ssize_t index) noexcept:
        return self._base + self._entries + index * ENTRY_SIZE

    cdef unsigned char *_poolp(self, Py_ssize_t index) noexcept:
        return self._base + ST_POOLS + index * POOL_SIZE

    cdef list _rows(self):
        """Raw live entries (lock held by the caller)."""
        cdef Py_ssize_t i
        cdef unsigned char *e
        cdef list rows = []
        for i in range(u32(self._base + ST_HWM)[0]):
            e = self._entry(i)
            if e[E_STATE] != FREE:
                rows.append((i, e[E_STATE], (<char *>e + E_ID)[:e[E_ID_LEN]], u16(e + E_POOL)[0],
                             u32(e + E_SLOTS)[0], u32(e + E_OWNER)[0], u64(e + E_TICKET)[0],
                             u64(e + E_REQUESTED)[0], u64(e + E_ACQUIRED)[0]))
        return rows

    def _records(self):
        self._enter()
        try:
            rows = self._rows()
        finally:
            self._leave()
        rows.sort(key=lambda r: r[6])
        return [
            _slotops.record(key, self._names[pool], slots, owner, req, acq, state)
            for _i, state, key, pool, slots, owner, _ticket, req, acq in rows
        ]

    # ---- critical sections (lock held) ------------------------------------------------------

    cdef void _repair(self) noexcept:
        """After a holder died mid-section: recompute the pool counters and the high-water mark."""
        cdef Py_ssize_t i, npools = u32(self._base + ST_NPOOLS)[0]
        cdef Py_ssize_t hwm = 0
        cdef unsigned char *e
        cdef unsigned char *p
        cdef uint16_t pool
        for i in range(npools):
            p = self._poolp(i)
            u32(p + POOL_IN_USE)[0] = 0
            u32(p + POOL_ACTIVE)[0] = 0
            u32(p + POOL_QUEUED)[0] = 0
        for i in range(self._max):
            e = self._entry(i)
            pool = u16(e + E_POOL)[0]
            if e[E_STATE] == FREE or pool >= npools:
                continue
            hwm = i + 1
            p = self._poolp(pool)
            if e[E_STATE] == GRANTED:
                u32(p + POOL_IN_USE)[0] += u32(e + E_SLOTS)[0]
                u32(p + POOL_ACTIVE)[0] += 1
            else:
                u32(p + POOL_QUEUED)[0] += 1
        u32(self._base + ST_HWM)[0] = <uint32_t>hwm

    cdef Py_ssize_t _find(self, bytes key) noexcept:
        cdef Py_ssize_t i, n = len(key)
        cdef const char *k = key
        cdef unsigned char *e
        for i in range(u32(self._base + ST_HWM)[0]):
            e = self._entry(i)
            if e[E_STATE] != FREE and e[E_ID_LEN] == n and memcmp(e + E_ID, k, n) == 0:
                return i
        return -1

    cdef Py_ssize_t _alloc(self) noexcept:
        cdef Py_ssize_t i, hwm = u32(self._base + ST_HWM)[0]
        for i in range(hwm):
            if self._entry(i)[E_STATE] == FREE:
                return i
        if hwm >= self._max:
            return -1
        u32(self._base + ST_HWM)[0] = <uint32_t>(hwm + 1)
        return hwm

    cdef void _free(self, Py_ssize_t index) noexcept:
        cdef Py_ssize_t hwm = u32(self._base + ST_HWM)[0]
        self._entry(index)[E_STATE] = FREE
        while hwm > 0 and self._entry(hwm - 1)[E_STATE] == FREE:
            hwm -= 1
        u32(self._base + ST_HWM)[0] = <uint32_t>hwm

    cdef bint _grant(self, Py_ssize_t pool) noexcept:
        """Grant from the pool's queue head while it fits; True when waiters should be rung."""
        cdef unsigned char *p = self._poolp(pool)
        cdef unsigned char *e
        cdef unsigned char *head
        cdef Py_ssize_t i, hwm
        cdef uint64_t ticket
        cdef int granted = 0
        while u32(p + POOL_QUEUED)[0]:
            head = NULL
            ticket = 0
            hwm = u32(self._base + ST_HWM)[0]
            for i in range(hwm):
                e = self._entry(i)
                if e[E_STATE] == QUEUED and u16(e + E_POOL)[0] == pool and (head == NULL or u64(e + E_TICKET)[0] < ticket):
                    head = e
                    ticket = u64(e + E_TICKET)[0]
            if head == NULL or u32(p + POOL_IN_USE)[0] + u32(head + E_SLOTS)[0] > u32(p + POOL_CAPACITY)[0]:
                break  # strict FIFO: nothing behind a head that does not fit
            u64(head + E_ACQUIRED)[0] = wall_ms()
            head[E_STATE] = GRANTED
            u32(p + POOL_IN_USE)[0] += u32(head + E_SLOTS)[0]
            u32(p + POOL_ACTIVE)[0] += 1
            u32(p + POOL_QUEUED)[0] -= 1
            granted += 1
        if granted and u32(self._base + ST_WAITERS)[0] and not u32(self._base + ST_RUNG)[0]:
            u32(self._base + ST_RUNG)[0] = 1
            return True
        return False

    cdef bint _remove(self, Py_ssize_t index, bint grant=True) noexcept:
        cdef unsigned char *e = self._entry(index)
        cdef uint16_t pool = u16(e + E_POOL)[0]
        cdef unsigned char *p = self._poolp(pool)
        if e[E_STATE] == GRANTED:
            u32(p + POOL_IN_USE)[0] -= u32(e + E_SLOTS)[0]
            u32(p + POOL_ACTIVE)[0] -= 1
        else:
            u32(p + POOL_QUEUED)[0] -= 1
        self._free(index)
        return self._grant(pool) if grant else False

    # ---- primitives used by _slotops --------------------------------------------------------

    def _enqueue(self, pool, uint32_t slots, uint32_t owner, bytes key, int mode):
        return self._enqueue_c(self._pool(pool), slots, owner, key, mode)

    cdef tuple _enqueue_c(self, Py_ssize_t index, uint32_t slots, uint32_t owner, bytes key, int mode):
        cdef unsigned char *p
        cdef unsigned char *e
        cdef Py_ssize_t slot = -1
        cdef int error = ERR_NONE
        cdef uint32_t capacity
        cdef uint64_t ticket = 0, now
        cdef bint fits = False
        self._enter()
        p = self._poolp(index)
        capacity = u32(p + POOL_CAPACITY)[0]
        fits = mode == FORCE or (u32(p + POOL_QUEUED)[0] == 0 and u32(p + POOL_IN_USE)[0] + slots <= capacity)
        if mode != FORCE and slots > capacity:
            error = ERR_TOO_MANY
        elif self._find(key) >= 0:
            error = ERR_DUPLICATE
        elif fits or mode != TRY:
            slot = self._alloc()
            if slot < 0:
                error = ERR_FULL
            else:
                ticket = u64(self._base + ST_NEXT_TICKET)[0]
                u64(self._base + ST_NEXT_TICKET)[0] = ticket + 1
                now = wall_ms()
                e = self._entry(slot)
                memset(e + 1, 0, ENTRY_SIZE - 1)
                e[E_ID_LEN] = <uint8_t>len(key)
                u16(e + E_POOL)[0] = <uint16_t>index
                u32(e + E_SLOTS)[0] = slots
                u32(e + E_OWNER)[0] = owner
                u64(e + E_TICKET)[0] = ticket
                u64(e + E_REQUESTED)[0] = now
                u64(e + E_ACQUIRED)[0] = now if fits else 0
                memcpy(e + E_ID, <char *>key, len(key))
                e[E_STATE] = GRANTED if fits else QUEUED  # state last
                if fits:
                    u32(p + POOL_IN_USE)[0] += slots
                    u32(p + POOL_ACTIVE)[0] += 1
                else:
                    u32(p + POOL_QUEUED)[0] += 1
        self._leave()
        if error != ERR_NONE:
            _slotops.raise_error(error, self, slots, capacity, key)
        return (fits and slot >= 0, slot, ticket)

    def _entry_state(self, Py_ssize_t index, uint64_t ticket, bint park):
        cdef unsigned char *e
        cdef int state
        self._enter()
        e = self._entry(index)
        state = e[E_STATE] if u64(e + E_TICKET)[0] == ticket else FREE
        if state == QUEUED and park:
            u32(self._base + ST_RUNG)[0] = 0
        self._leave()
        return state

    cdef bint _drop(self, bytes key, bint only_queued) except -1:
        cdef Py_ssize_t index
        cdef bint ring = False, done = False
        self._enter()
        index = self._find(key)
        if index >= 0 and not (only_queued and self._entry(index)[E_STATE] != QUEUED):
            ring = self._remove(index)
            done = True
        self._leave()
        self._ring_after(ring)
        return done

    def _withdraw(self, Py_ssize_t index, uint64_t ticket):
        cdef unsigned char *e
        cdef bint ring = False, granted = False
        self._enter()
        e = self._entry(index)
        if u64(e + E_TICKET)[0] == ticket:
            if e[E_STATE] == GRANTED:
                granted = True
            elif e[E_STATE] == QUEUED:
                ring = self._remove(index)
        self._leave()
        self._ring_after(ring)
        return granted

    def _release_entry(self, Py_ssize_t index, uint64_t ticket):
        cdef unsigned char *e
        cdef bint ring = False
        self._enter()
        e = self._entry(index)
        if u64(e + E_TICKET)[0] == ticket and e[E_STATE] != FREE:
            ring = self._remove(index)
        self._leave()
        self._ring_after(ring)

    def _snapshot(self):
        """``(index, ticket, owner pid, requested ms)`` of every live entry."""
        self._enter()
        try:
            rows = self._rows()
        finally:
            self._leave()
        return [(r[0], r[6], r[5], r[7]) for r in rows]

    def _remove_dead(self, victims):
        cdef Py_ssize_t index
        cdef uint64_t ticket
        cdef unsigned char *e
        cdef bint ring = False
        out = []
        pools = set()
        self._enter()
        try:
            for index, ticket in victims:
                e = self._entry(index)
                if u64(e + E_TICKET)[0] != ticket or e[E_STATE] == FREE:
                    continue
                out.append(_slotops.record(
                    (<char *>e + E_ID)[:e[E_ID_LEN]], self._names[u16(e + E_POOL)[0]], u32(e + E_SLOTS)[0],
                    u32(e + E_OWNER)[0], u64(e + E_REQUESTED)[0], u64(e + E_ACQUIRED)[0], e[E_STATE],
                ))
                pools.add(u16(e + E_POOL)[0])
                self._remove(index, False)  # every victim goes before anyone is granted
            for pool in sorted(pools):
                ring = self._grant(pool) or ring
        finally:
            self._leave()
        self._ring_after(ring)
        return out

    def _bell_enter(self):
        self._enter()
        u32(self._base + ST_WAITERS)[0] += 1
        self._leave()

    def _bell_leave(self):
        self._enter()
        if u32(self._base + ST_WAITERS)[0]:
            u32(self._base + ST_WAITERS)[0] -= 1
        self._leave()
