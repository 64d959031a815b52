# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Mailbox: the Cython implementation of the shared-memory mailbox.

Same API, byte layout and lock as ``ring.PyMailbox`` (offsets come from ``layout.py`` at
import); the single-record put/get and the batch paths run in C, the rare paths (waiting,
streaming, asyncio) are the shared generators of ``_ringops``.
"""

from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdint cimport uint32_t, uint64_t
from libc.string cimport memcpy
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec

from mncore._fast._shm cimport (
    mn_load64,
    mn_mutex_init,
    mn_mutex_size,
    mn_relax,
    mn_ring,
    mn_store64,
    mn_unlock,
    shm_lock,
    u16,
    u32,
    u64,
)

import os

from mncore._fast import _ringops, layout
from mncore._fast._bell import Bell
from mncore._fast.segment import Segment, unlink_segment

# ---- layout (read once from layout.py: the layout is defined in one place) -------------------
cdef Py_ssize_t HDR_BELL = layout.HDR_BELL
cdef Py_ssize_t HDR_LOCK = layout.HDR_LOCK
cdef Py_ssize_t MB_CAPACITY = layout.MB_CAPACITY
cdef Py_ssize_t MB_MAX_RECORD = layout.MB_MAX_RECORD
cdef Py_ssize_t MB_HEAD = layout.MB_HEAD
cdef Py_ssize_t MB_TAIL = layout.MB_TAIL
cdef Py_ssize_t MB_COUNT = layout.MB_COUNT
cdef Py_ssize_t MB_PUTS = layout.MB_PUTS
cdef Py_ssize_t MB_GETS = layout.MB_GETS
cdef Py_ssize_t MB_WOWNER = layout.MB_WSTREAM_OWNER
cdef Py_ssize_t MB_WSEQ = layout.MB_WSTREAM_SEQ
cdef Py_ssize_t MB_ROWNER = layout.MB_RSTREAM_OWNER
cdef Py_ssize_t MB_DATA_WAITERS = layout.MB_DATA_WAITERS
cdef Py_ssize_t MB_SPACE_WAITERS = layout.MB_SPACE_WAITERS
cdef Py_ssize_t MB_DATA = layout.MB_DATA
cdef Py_ssize_t HDR = layout.RECORD_HEADER_SIZE
cdef int KIND_SINGLE = layout.KIND_SINGLE
cdef int KIND_PAD = layout.KIND_PAD
cdef int KIND_FIRST = layout.KIND_FIRST
cdef int KIND_MORE = layout.KIND_MORE
cdef int KIND_LAST = layout.KIND_LAST
cdef bytes MAGIC = layout.MAILBOX_MAGIC
# primitive results (shared with _ringops)
cdef int OK = _ringops.OK
cdef int FULL = _ringops.FULL
cdef int BUSY = _ringops.BUSY
cdef int LOST = _ringops.LOST
cdef int EMPTY = _ringops.EMPTY
cdef int OWNED = _ringops.OWNED
cdef int DATA = _ringops.DATA

# spin budget before parking: long enough to catch a busy peer, short enough to cost little
cdef long long SPIN_NS = 30000

if mn_mutex_size() > layout.LOCK_SIZE:
    raise ImportError(f"pthread_mutex_t is {mn_mutex_size()} bytes; the layout reserves {layout.LOCK_SIZE}")


cdef inline long long now_ns() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <long long>ts.tv_sec * 1000000000 + ts.tv_nsec


cdef inline uint64_t rsize(uint64_t length) noexcept nogil:
    return (<uint64_t>HDR + length + 7) & ~(<uint64_t>7)


cdef class Mailbox:
    """A bounded multi-producer / multi-consumer ring of byte records in shared memory."""

    def __cinit__(self):
        self._base = NULL
        self._fd = -1

    def __init__(self, segment):
        cdef unsigned char[::1] view = segment.mm
        self._seg = segment
        self._name = segment.name
        self._fd = segment.fd
        self._view = view
        self._base = &view[0]
        self._bell = Bell(segment.path)
        self._enter()
        self._cap = u64(self._base + MB_CAPACITY)[0]
        self._max_single = <Py_ssize_t>u64(self._base + MB_MAX_RECORD)[0] - HDR
        self._leave()

    # ---- lifecycle -------------------------------------------------------------------------

    @classmethod
    def create(cls, name=None, capacity=layout.DEFAULT_CAPACITY):
        """Create ``/dev/shm/mn_<name>`` with a data area of ``capacity`` bytes (rounded up to 8)."""
        cdef unsigned char[::1] view
        cdef int rc
        cap, max_record = layout.mailbox_geometry(capacity)
        seg = Segment.create(name, MB_DATA + cap, MB_DATA)
        try:
            view = seg.mm
            rc = mn_mutex_init(&view[0] + HDR_LOCK)
            if rc:
                raise OSError(rc, f"pthread_mutex_init failed: {os.strerror(rc)}")
            u64(&view[0] + MB_CAPACITY)[0] = cap
            u64(&view[0] + MB_MAX_RECORD)[0] = max_record
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
        """Open an existing mailbox by name (with or without the ``mn_`` prefix)."""
        return cls(Segment.attach(name, MAGIC))

    @property
    def name(self):
        return self._name

    @property
    def capacity(self):
        return self._cap

    @property
    def max_record(self):
        """Largest payload stored as one record; larger ones are streamed in chunks."""
        return self._max_single

    def close(self):
        """Unmap this handle (idempotent); the segment stays until :meth:`unlink`."""
        if self._seg is None:
            return
        seg, self._seg = self._seg, None
        self._bell.close()
        self._base = NULL
        self._view = None
        seg.close()

    def unlink(self):
        """Remove the segment name (idempotent); open handles keep working until closed."""
        unlink_segment(self._name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __reduce__(self):
        return (type(self).attach, (self._name,))

    def __repr__(self):
        return f"<Mailbox {self._name}{'' if self._base != NULL else ' (closed)'}>"

    def fileno(self):
        """An fd that becomes readable when the mailbox rings (for ``loop.add_reader``)."""
        if self._base == NULL:
            raise ValueError("mailbox is closed")
        return self._bell.fileno()

    # ---- public operations ----------------------------------------------------------------

    def put(self, data, timeout=None):
        """Append one record; waits while full (None: forever, 0: not at all). False on timeout."""
        if type(data) is not bytes:
            data = _ringops.as_buffer(data)
        if len(data) <= self._max_single:
            if self._push_obj(KIND_SINGLE, data, 0, False) == OK:
                return True
            if timeout is not None and timeout <= 0:
                return False
        return _ringops.put(self, data, timeout)

    def put_many(self, records, timeout=None):
        """Append records in order; returns how many were put before a timeout."""
        if not isinstance(records, (list, tuple)):
            records = list(records)
        cdef Py_ssize_t done = self._push_singles(records, 0)
        if done == len(records):
            return done
        return done + _ringops.put_many(self, records[done:], timeout)

    def get(self, timeout=None):
        """Take the oldest record; waits while empty. None on timeout."""
        out = self._take_singles(1)
        if out:
            return out[0]
        return _ringops.get(self, timeout)

    def get_many(self, max_records, timeout=None):
        """Take up to ``max_records``; waits only for the first one."""
        out = self._take_singles(_ringops.check_max(max_records))
        if out:
            return out
        return _ringops.get_many(self, max_records, timeout)

    async def get_async(self, timeout=None):
        """:meth:`get` for an asyncio / uvloop loop: parks on :meth:`fileno`, never blocks it."""
        out = self._take_singles(1)
        if out:
            return out[0]
        return await _ringops.get_async(self, timeout)

    async def get_many_async(self, max_records, timeout=None):
        return await _ringops.get_many_async(self, max_records, timeout)

    async def put_async(self, data, timeout=None):
        if type(data) is not bytes:
            data = _ringops.as_buffer(data)
        if len(data) <= self._max_single and self._push_obj(KIND_SINGLE, data, 0, False) == OK:
            return True
        return await _ringops.put_async(self, data, timeout)

    async def wait_readable(self, timeout=None):
        """Wait until a record is queued (True) or the timeout passes (False)."""
        return await _ringops.wait_readable(self, timeout)

    def stats(self):
        """Counters read under the lock: records queued, bytes used, capacity, waiters."""
        cdef unsigned char *b
        cdef uint64_t head, tail, count, puts, gets, writer
        cdef uint32_t consumers, producers
        self._enter()
        b = self._base
        head = u64(b + MB_HEAD)[0]
        tail = u64(b + MB_TAIL)[0]
        count = u64(b + MB_COUNT)[0]
        puts = u64(b + MB_PUTS)[0]
        gets = u64(b + MB_GETS)[0]
        writer = u64(b + MB_WOWNER)[0]
        consumers = u32(b + MB_DATA_WAITERS)[0]
        producers = u32(b + MB_SPACE_WAITERS)[0]
        self._leave()
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

    cdef int _enter(self) except -1:
        if self._base == NULL:
            raise ValueError("mailbox is closed")
        if shm_lock(self._base + HDR_LOCK) == 1:
            self._repair()
        return 0

    cdef void _leave(self) noexcept:
        mn_unlock(self._base + HDR_LOCK)

    cdef void _repair(self) noexcept:
        """After a holder died mid-section: recount the records between head and tail."""
        cdef unsigned char *b = self._base
        cdef uint64_t cap = self._cap
        cdef uint64_t pos = u64(b + MB_HEAD)[0]
        cdef uint64_t tail = u64(b + MB_TAIL)[0]
        cdef uint64_t count = 0
        cdef uint64_t off
        while pos < tail:
            off = pos % cap
            if u16(b + MB_DATA + off + 4)[0] == KIND_PAD:
                pos += cap - off
                continue
            count += 1
            pos += rsize(u32(b + MB_DATA + off)[0])
        u64(b + MB_COUNT)[0] = count

    cdef bint _should_ring(self, Py_ssize_t offset) noexcept:
        cdef unsigned char *b = self._base
        if u32(b + offset)[0] and not u32(b + offset + 4)[0]:
            u32(b + offset + 4)[0] = 1
            return True
        return False

    cdef bint _write(self, int kind, const unsigned char *data, Py_ssize_t n) noexcept:
        """Write one record if it fits (lock held); publishes by storing tail last."""
        cdef unsigned char *b = self._base
        cdef uint64_t cap = self._cap
        cdef uint64_t size = rsize(n)
        cdef uint64_t head = u64(b + MB_HEAD)[0]
        cdef uint64_t tail = u64(b + MB_TAIL)[0]
        cdef uint64_t used = tail - head
        cdef uint64_t off = tail % cap
        cdef uint64_t room = cap - off
        cdef unsigned char *p
        if size > room:
            if used == 0:  # empty: skip to the start of the data area
                tail += room
                u64(b + MB_HEAD)[0] = tail
                mn_store64(b + MB_TAIL, tail)
                off = 0
            elif used + room + size > cap:
                return False
            else:
                p = b + MB_DATA + off
                u32(p)[0] = <uint32_t>(room - HDR)
                u16(p + 4)[0] = KIND_PAD
                u16(p + 6)[0] = 0
                tail += room
                off = 0
        elif used + size > cap:
            return False
        p = b + MB_DATA + off
        u32(p)[0] = <uint32_t>n
        u16(p + 4)[0] = <unsigned short>kind
        u16(p + 6)[0] = 0
        memcpy(p + HDR, data, n)
        u64(b + MB_COUNT)[0] += 1
        u64(b + MB_PUTS)[0] += 1
        mn_store64(b + MB_TAIL, tail + size)
        return True

    cdef int _push_ptr(self, int kind, const unsigned char *data, Py_ssize_t n, uint64_t token, bint park) except -1:
        cdef unsigned char *b
        cdef uint64_t writer
        cdef int status
        cdef bint ring = False
        self._enter()
        b = self._base
        writer = u64(b + MB_WOWNER)[0]
        if writer != token and (writer != 0 or kind != KIND_SINGLE):
            status = BUSY if kind == KIND_SINGLE else LOST
        else:
            status = OK if self._write(kind, data, n) else FULL
        if status == OK:
            ring = self._should_ring(MB_DATA_WAITERS)
        elif park:
            u32(b + MB_SPACE_WAITERS + 4)[0] = 0
        self._leave()
        if ring:
            with nogil:
                mn_ring(self._fd, HDR_BELL)
        return status

    cdef int _push_obj(self, int kind, object data, uint64_t token, bint park) except -1:
        cdef Py_buffer buf
        cdef int status
        if type(data) is bytes:
            return self._push_ptr(
                kind, <const unsigned char *>PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data), token, park
            )
        PyObject_GetBuffer(data, &buf, PyBUF_SIMPLE)
        try:
            status = self._push_ptr(kind, <const unsigned char *>buf.buf, buf.len, token, park)
        finally:
            PyBuffer_Release(&buf)
        return status

    cdef list _take_singles(self, Py_ssize_t limit):
        """Take up to ``limit`` whole records from the head (pads skipped, chunks left alone)."""
        cdef unsigned char *b
        cdef unsigned char *p
        cdef uint64_t cap = self._cap
        cdef uint64_t head, tail, start, off
        cdef uint32_t length
        cdef list out = []
        cdef Py_ssize_t taken = 0
        cdef bint ring = False
        self._enter()
        try:
            b = self._base
            head = u64(b + MB_HEAD)[0]
            start = head
            tail = mn_load64(b + MB_TAIL)
            while head != tail and taken < limit:
                off = head % cap
                p = b + MB_DATA + off
                if u16(p + 4)[0] == KIND_PAD:
                    head += cap - off
                    continue
                if u16(p + 4)[0] != KIND_SINGLE:
                    break
                length = u32(p)[0]
                out.append(PyBytes_FromStringAndSize(<char *>p + HDR, length))
                head += rsize(length)
                taken += 1
            if head != start:
                u64(b + MB_COUNT)[0] -= taken
                u64(b + MB_GETS)[0] += taken
                mn_store64(b + MB_HEAD, head)
                ring = self._should_ring(MB_SPACE_WAITERS)
        finally:
            self._leave()
        if ring:
            with nogil:
                mn_ring(self._fd, HDR_BELL)
        return out

    # ---- primitives used by _ringops (see its docstring) ---------------------------------

    def _push(self, int kind, data, uint64_t token, bint park):
        return self._push_obj(kind, data, token, park)

    def _push_singles(self, records, Py_ssize_t start):
        cdef Py_ssize_t i
        cdef Py_ssize_t done = 0
        cdef Py_ssize_t n
        cdef Py_buffer buf
        cdef bint ok
        cdef bint ring = False
        self._enter()
        try:
            if u64(self._base + MB_WOWNER)[0] == 0:
                for i in range(start, len(records)):
                    data = records[i]
                    if type(data) is bytes:
                        n = PyBytes_GET_SIZE(data)
                        ok = n <= self._max_single and self._write(
                            KIND_SINGLE, <const unsigned char *>PyBytes_AS_STRING(data), n
                        )
                    else:
                        PyObject_GetBuffer(data, &buf, PyBUF_SIMPLE)
                        ok = buf.len <= self._max_single and self._write(
                            KIND_SINGLE, <const unsigned char *>buf.buf, buf.len
                        )
                        PyBuffer_Release(&buf)
                    if not ok:
                        break
                    done += 1
            if done:
                ring = self._should_ring(MB_DATA_WAITERS)
        finally:
            self._leave()
        if ring:
            with nogil:
                mn_ring(self._fd, HDR_BELL)
        return done

    def _pop_singles(self, Py_ssize_t limit):
        return self._take_singles(limit)

    def _pop(self, uint64_t token, bint park):
        cdef unsigned char *b
        cdef unsigned char *p
        cdef uint64_t cap = self._cap
        cdef uint64_t head, tail, off, size, reader
        cdef uint32_t length
        cdef int kind
        cdef int status = EMPTY
        cdef bint freed = False
        cdef bint ring = False
        cdef bint corrupt = False
        payload = None
        self._enter()
        try:
            b = self._base
            while True:
                head = u64(b + MB_HEAD)[0]
                tail = u64(b + MB_TAIL)[0]
                if head == tail:
                    break
                off = head % cap
                p = b + MB_DATA + off
                length = u32(p)[0]
                kind = u16(p + 4)[0]
                if kind == KIND_PAD:
                    mn_store64(b + MB_HEAD, head + cap - off)
                    freed = True
                    continue
                size = rsize(length)
                if kind < KIND_SINGLE or kind > KIND_LAST or size > cap - off:
                    corrupt = True
                    break
                reader = u64(b + MB_ROWNER)[0]
                if kind == KIND_MORE or kind == KIND_LAST:
                    if reader != token:
                        if reader:
                            status = OWNED
                            break
                        u64(b + MB_COUNT)[0] -= 1  # orphan chunk of an abandoned stream
                        u64(b + MB_GETS)[0] += 1
                        mn_store64(b + MB_HEAD, head + size)
                        freed = True
                        continue
                    if kind == KIND_LAST:
                        u64(b + MB_ROWNER)[0] = 0
                elif kind == KIND_FIRST:
                    u64(b + MB_ROWNER)[0] = token
                elif reader == token:
                    u64(b + MB_ROWNER)[0] = 0
                payload = PyBytes_FromStringAndSize(<char *>p + HDR, length)
                u64(b + MB_COUNT)[0] -= 1
                u64(b + MB_GETS)[0] += 1
                mn_store64(b + MB_HEAD, head + size)
                freed = True
                status = kind
                break
            ring = freed and self._should_ring(MB_SPACE_WAITERS)
            if park and status <= 0:
                u32(b + MB_DATA_WAITERS + 4)[0] = 0
        finally:
            self._leave()
        if ring:
            with nogil:
                mn_ring(self._fd, HDR_BELL)
        if corrupt:
            raise RuntimeError(f"mailbox {self._name} is corrupted at position {head}")
        return (status, payload)

    def _data_ready(self, bint park):
        cdef bint ready
        self._enter()
        ready = u64(self._base + MB_HEAD)[0] != u64(self._base + MB_TAIL)[0]
        if not ready and park:
            u32(self._base + MB_DATA_WAITERS + 4)[0] = 0
        self._leave()
        return ready

    def _wstream_begin(self, uint64_t token, bint park):
        cdef unsigned char *b
        cdef uint64_t seq = 0
        self._enter()
        b = self._base
        if u64(b + MB_WOWNER)[0] == 0:
            seq = u64(b + MB_WSEQ)[0] + 1
            u64(b + MB_WOWNER)[0] = token
            u64(b + MB_WSEQ)[0] = seq
        elif park:
            u32(b + MB_SPACE_WAITERS + 4)[0] = 0
        self._leave()
        return seq

    def _wstream_clear(self, uint64_t token):
        return self._clear_owner(MB_WOWNER, token, True)

    def _rstream_clear(self, uint64_t token):
        return self._clear_owner(MB_ROWNER, token, False)

    def _clear_owner(self, Py_ssize_t offset, uint64_t token, bint both):
        cdef bint cleared
        cdef bint ring = False
        self._enter()
        cleared = u64(self._base + offset)[0] == token
        if cleared:
            u64(self._base + offset)[0] = 0
            ring = self._should_ring(MB_DATA_WAITERS)
            if both:
                ring = self._should_ring(MB_SPACE_WAITERS) or ring
        self._leave()
        if ring:
            with nogil:
                mn_ring(self._fd, HDR_BELL)
        return cleared

    def _stream_state(self):
        cdef unsigned char *b
        cdef uint64_t writer, seq, reader
        self._enter()
        b = self._base
        writer = u64(b + MB_WOWNER)[0]
        seq = u64(b + MB_WSEQ)[0]
        reader = u64(b + MB_ROWNER)[0]
        self._leave()
        return (writer, seq, reader)

    def _bell_enter(self, int which):
        self._add_waiter(MB_DATA_WAITERS if which == DATA else MB_SPACE_WAITERS, 1)

    def _bell_leave(self, int which):
        self._add_waiter(MB_DATA_WAITERS if which == DATA else MB_SPACE_WAITERS, -1)

    def _add_waiter(self, Py_ssize_t offset, int delta):
        cdef uint32_t *waiters
        self._enter()
        waiters = u32(self._base + offset)
        if delta > 0:
            waiters[0] += 1
        elif waiters[0] > 0:
            waiters[0] -= 1
        self._leave()

    def _spin(self, int which):
        """Spin briefly (no GIL) until the head or tail moves; True when it did."""
        cdef unsigned char *b = self._base
        cdef uint64_t head0
        cdef int i
        cdef bint moved = False
        cdef long long until
        if b == NULL:
            return False
        head0 = mn_load64(b + MB_HEAD)
        with nogil:
            until = now_ns() + SPIN_NS
            while not moved and now_ns() < until:
                for i in range(16):
                    mn_relax()
                    if which == DATA:
                        moved = mn_load64(b + MB_TAIL) != mn_load64(b + MB_HEAD)
                    else:
                        moved = mn_load64(b + MB_HEAD) != head0
                    if moved:
                        break
        return moved
