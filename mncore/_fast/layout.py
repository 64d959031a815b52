"""The shared-memory byte layout of ``mncore._fast``, defined once for both implementations.

The Cython classes (``_ring.pyx``, ``_slots.pyx``) read every offset below from this module at
import time; the pure-Python classes (``ring.py``, ``slots.py``) use the same offsets through
``struct``. A segment written by one implementation is read by the other.

Segments
    A segment is a POSIX shared-memory object ``/dev/shm/mn_<name>`` (the same object
    ``multiprocessing.shared_memory.SharedMemory("mn_<name>")`` opens) mapped ``MAP_SHARED``.
    It is opened with ``os.open`` + ``mmap`` rather than through ``SharedMemory`` because on
    Python < 3.13 ``SharedMemory`` registers every *attach* with the resource tracker, which
    unlinks the segment when any attaching process exits. Lifetime is explicit instead:
    the creator unlinks, and :func:`~mncore._fast.segment.cleanup_stale` removes segments
    whose creator pid (stored in the header) is dead. There are no sidecar files.

Common header (both structures, little- or big-endian as the host; standard sizes)
    ======  ====  =========================================================================
    offset  size  field
    ======  ====  =========================================================================
    0       4     magic: ``MNMB`` (mailbox) or ``MNST`` (slot table); written last on create
    4       4     layout version (``VERSION``)
    8       4     creator pid
    12      4     body offset (header size)
    16      8     created at, wall-clock ms
    24      8     segment size in bytes
    56      1     doorbell byte: target of the 1-byte ``pwrite`` that rings (value unused)
    64      64    lock: a glibc ``pthread_mutex_t``, process-shared and robust
    ======  ====  =========================================================================

Concurrency
    Every mutation happens in a short critical section under the header lock. The lock is a
    process-shared *robust* ``pthread_mutex_t``: the Cython build calls libc directly (trylock
    with a short ``pause`` spin, then a blocking lock without the GIL); the pure build calls the
    very same libc functions through ``ctypes`` on the segment's address. Both therefore honour
    one lock word, so the implementations interoperate on a live segment. A holder killed
    inside the section hands the next locker ``EOWNERDEAD``; it marks the mutex consistent and
    recomputes the derived counters. Sections are written so that a kill at any point leaves
    a valid state: a record is published by storing ``tail`` last and consumed by storing
    ``head`` (so a kill loses an unpublished record or re-delivers an unconsumed one, never
    half of one); a slot entry's state byte is written after its fields.
    Pure Python cannot perform atomic read-modify-write on shared memory, which is why the
    structures are not lock-free: the Cython build uses ``__atomic`` loads only for lock-free
    peeks (spinning before it parks), never for mutation.

Doorbell
    Waiting is "spin briefly, then park". A parked waiter first increments a waiters counter
    for its condition (data / space / grant), re-checks under the lock, and sleeps on an
    ``inotify`` watch (``IN_MODIFY``) of the segment file. Ringing is a 1-byte ``pwrite`` of
    the doorbell byte, done after the critical section and only when the counter is non-zero
    and the condition's ``rung`` flag is clear; ringing sets ``rung`` and every check that ends
    in parking clears it, so a burst of puts costs one syscall per sleep, not per record.
    inotify delivers each ring to every watching instance (broadcast, coalesced while unread),
    so no wake-up can be consumed by the wrong process. Sync waiters use one inotify instance
    per thread (shared by all segments that thread waits on); asyncio waiters use one per
    handle, whose fd is ``fileno()``. Waiters also re-check every ``_bell.RECHECK_INTERVAL``
    seconds (liveness of stream owners, robustness against a waiter killed mid-protocol).

Mailbox body (offset 128)
    ======  ====  =========================================================================
    128     8     capacity of the data area in bytes (multiple of ``RECORD_ALIGN``)
    136     8     max record: largest record stored whole, header included (capacity / 4, <= 1 GiB)
    144     8     head: monotonic byte position of the next record to read
    152     8     tail: monotonic byte position of the next free byte (stored last on put)
    160     8     records queued (chunks count one each; pads not counted)
    168     8     records put (ever)        176  8  records taken (ever)
    184     8     write-stream owner token (0 = none)   192  8  write-stream sequence
    200     8     read-stream owner token (0 = none)
    208     4+4   data waiters, data rung   216  4+4  space waiters, space rung
    256     ...   data area (``capacity`` bytes)
    ======  ====  =========================================================================

    A record is an 8-byte header ``(u32 payload length, u16 kind, u16 flags=0)`` followed by
    the payload, padded to 8 bytes; the offset of a position is ``position % capacity``.
    A record that does not fit before the end of the data area is preceded by a ``PAD``
    record filling the rest (a header always fits: everything is 8-aligned); an empty ring
    simply skips to the start. A payload larger than ``max record - 8`` is *streamed*: one
    ``FIRST`` chunk (payload starts with ``u64 total length, u64 stream sequence``), ``MORE``
    chunks and a ``LAST`` chunk, reassembled by one consumer, so any size is accepted.
    Streams are exclusive on both sides: a producer claims the write-stream owner word before
    its ``FIRST`` (other producers wait), and the consumer that takes a ``FIRST`` claims the
    read-stream owner word (other consumers do not take ``MORE``/``LAST`` owned by a live
    consumer). A producer that times out or dies abandons its stream (the owner word is
    cleared without a ``LAST``); its consumer then discards the partial record. Chunks whose
    reader died or gave up are discarded by whoever meets them. Tokens are
    ``pid << 32 | per-process counter``, so liveness is checked by pid.

Slot table body (offset 128)
    ======  ====  =========================================================================
    128     4     number of pools          132  4  max entries (leases + waiters)
    136     4     high-water mark: entries at or above it are free
    140     4+4   grant waiters, grant rung
    152     8     next ticket (FIFO order across processes)
    256     64*n  pools: ``(u16 name length, 46s utf-8 name, u32 capacity, in_use, active,
                  queued)``
    ...     80*m  entries, 64-aligned: ``(u8 state, u8 id length, u16 pool, u32 slots,
                  u32 owner pid, u32 flags, u64 ticket, u64 requested ms, u64 acquired ms,
                  40s lease id)``; state 0 free, 1 queued, 2 granted
    ======  ====  =========================================================================

    A pool's queue is its ``QUEUED`` entries in ticket order; grants are made by whoever
    frees capacity (release, cancel, reclaim, capacity change) strictly from the head, so a
    waiter that is slow to wake never delays the ones behind it.
"""

from __future__ import annotations

import struct

VERSION = 1
PREFIX = "mn_"
SHM_DIR = "/dev/shm"

MAILBOX_MAGIC = b"MNMB"
SLOTS_MAGIC = b"MNST"

# ---- common header ----------------------------------------------------------------------
HDR_MAGIC = 0
HDR_VERSION = 4
HDR_CREATOR_PID = 8
HDR_BODY_OFFSET = 12
HDR_CREATED_MS = 16
HDR_SEGMENT_SIZE = 24
HDR_BELL = 56
HDR_LOCK = 64
LOCK_SIZE = 64
HEADER_STRUCT = struct.Struct("=4sIIIQQ")  # magic, version, creator pid, body offset, created ms, size

# ---- mailbox ------------------------------------------------------------------------------
MB_CAPACITY = 128
MB_MAX_RECORD = 136
MB_HEAD = 144
MB_TAIL = 152
MB_COUNT = 160
MB_PUTS = 168
MB_GETS = 176
MB_WSTREAM_OWNER = 184
MB_WSTREAM_SEQ = 192
MB_RSTREAM_OWNER = 200
MB_DATA_WAITERS = 208
MB_DATA_RUNG = 212
MB_SPACE_WAITERS = 216
MB_SPACE_RUNG = 220
MB_DATA = 256

RECORD_HEADER = struct.Struct("=IHH")  # payload length, kind, flags
RECORD_HEADER_SIZE = 8
RECORD_ALIGN = 8
STREAM_HEADER = struct.Struct("=QQ")  # FIRST chunk prefix: total length, stream sequence
STREAM_HEADER_SIZE = 16
MAX_RECORD_DIVISOR = 4  # a record stored whole takes at most capacity / 4
MAX_RECORD_CAP = 1 << 30  # ... and at most 1 GiB, so a length always fits the u32 field
MIN_CAPACITY = 1024
DEFAULT_CAPACITY = 1 << 20

KIND_SINGLE = 1
KIND_PAD = 2
KIND_FIRST = 3
KIND_MORE = 4
KIND_LAST = 5

# ---- slot table ---------------------------------------------------------------------------
ST_NPOOLS = 128
ST_MAX_ENTRIES = 132
ST_HWM = 136
ST_WAITERS = 140
ST_RUNG = 144
ST_NEXT_TICKET = 152
ST_POOLS = 256

POOL_STRUCT = struct.Struct("=H46sIIII")  # name length, name, capacity, in_use, active, queued
POOL_SIZE = 64
POOL_NAME_MAX = 46
POOL_CAPACITY = 48
POOL_IN_USE = 52
POOL_ACTIVE = 56
POOL_QUEUED = 60
MAX_POOLS = 1024

ENTRY_STRUCT = struct.Struct("=BBHIIIQQQ40s")
ENTRY_SIZE = 80
ENTRY_STATE = 0
ENTRY_ID_LEN = 1
ENTRY_POOL = 2
ENTRY_SLOTS = 4
ENTRY_OWNER = 8
ENTRY_FLAGS = 12
ENTRY_TICKET = 16
ENTRY_REQUESTED = 24
ENTRY_ACQUIRED = 32
ENTRY_ID = 40
LEASE_ID_MAX = 40

STATE_FREE = 0
STATE_QUEUED = 1
STATE_GRANTED = 2

DEFAULT_MAX_LEASES = 4096


def align(value: int, to: int) -> int:
    """Round ``value`` up to a multiple of ``to`` (a power of two)."""
    return (value + to - 1) & ~(to - 1)


def record_size(payload_length: int) -> int:
    """Bytes a record with this payload takes in the data area, header and padding included."""
    return align(RECORD_HEADER_SIZE + payload_length, RECORD_ALIGN)


def mailbox_geometry(capacity: int) -> tuple[int, int]:
    """``(capacity, max record)`` for a requested capacity: 8-aligned, at least ``MIN_CAPACITY``."""
    cap = align(max(int(capacity), MIN_CAPACITY), RECORD_ALIGN)
    max_record = min(cap // MAX_RECORD_DIVISOR, MAX_RECORD_CAP) & ~(RECORD_ALIGN - 1)
    return cap, max_record


def slots_entries_offset(npools: int) -> int:
    """Offset of the first lease entry for a table with ``npools`` pools."""
    return align(ST_POOLS + npools * POOL_SIZE, 64)


def slots_segment_size(npools: int, max_entries: int) -> int:
    return slots_entries_offset(npools) + max_entries * ENTRY_SIZE


# A check that the table above and the struct formats agree (cheap, import time).
assert HEADER_STRUCT.size == 32
assert RECORD_HEADER.size == RECORD_HEADER_SIZE
assert POOL_STRUCT.size == POOL_SIZE
assert ENTRY_STRUCT.size == ENTRY_SIZE
assert HDR_LOCK + LOCK_SIZE <= MB_CAPACITY
