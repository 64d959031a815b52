"""Child-process bodies for the mncore._fast tests (importable by spawned children).

Every function takes the implementation name (``"python"`` or ``"cython"``) so a test can
write with one implementation and read with the other.
"""

from __future__ import annotations

import os
import signal
import struct
import time
from typing import Any

_REC = struct.Struct("=II")  # producer id, sequence number
STOP = b"STOP"


def classes(impl: str) -> tuple[Any, Any]:
    if impl == "cython":
        from mncore._fast._ring import Mailbox
        from mncore._fast._slots import SlotTable

        return Mailbox, SlotTable
    from mncore._fast import PyMailbox, PySlotTable

    return PyMailbox, PySlotTable


def make_record(producer: int, seq: int, size: int) -> bytes:
    fill = bytes([(producer * 31 + seq) & 0xFF]) * max(0, size - _REC.size)
    return _REC.pack(producer, seq) + fill


def check_record(data: bytes) -> tuple[int, int, bool]:
    producer, seq = _REC.unpack_from(data)
    fill = data[_REC.size :]
    ok = fill == bytes([(producer * 31 + seq) & 0xFF]) * len(fill)
    return producer, seq, ok


def record_size(producer: int, seq: int, big: int, big_every: int) -> int:
    if big_every and seq % big_every == big_every - 1:
        return big
    return 16 + (producer * 7 + seq * 13) % 180


# ---- mailbox ---------------------------------------------------------------------------------


def produce(impl: str, name: str, producer: int, count: int, big: int = 0, big_every: int = 0) -> None:
    mailbox = classes(impl)[0].attach(name)
    try:
        for seq in range(count):
            if not mailbox.put(make_record(producer, seq, record_size(producer, seq, big, big_every)), timeout=60):
                raise SystemExit(f"producer {producer}: put {seq} timed out")
    finally:
        mailbox.close()


def consume(impl: str, name: str, results: Any, batch: int = 1) -> None:
    """Take records until ``STOP``; report ``(pid, [(producer, seq)...], bad records)``."""
    mailbox = classes(impl)[0].attach(name)
    seen: list[tuple[int, int]] = []
    bad = 0
    try:
        while True:
            records = mailbox.get_many(batch, timeout=60) if batch > 1 else [mailbox.get(timeout=60)]
            if not records or records[0] is None:
                raise SystemExit("consumer: get timed out")
            stops = 0
            for data in records:
                if data == STOP:
                    stops += 1
                    continue
                producer, seq, ok = check_record(data)
                seen.append((producer, seq))
                bad += not ok
            if stops:
                mailbox.put_many([STOP] * (stops - 1))  # a batch may hold other consumers' sentinels
                break
    finally:
        mailbox.close()
    results.put((os.getpid(), seen, bad))


def write_sequence(impl: str, name: str, payloads: list[bytes]) -> None:
    mailbox = classes(impl)[0].attach(name)
    try:
        for data in payloads:
            if not mailbox.put(data, timeout=60):
                raise SystemExit("put timed out")
    finally:
        mailbox.close()


def read_sequence(impl: str, name: str, count: int, results: Any) -> None:
    mailbox = classes(impl)[0].attach(name)
    try:
        results.put([mailbox.get(timeout=60) for _ in range(count)])
    finally:
        mailbox.close()


def parked_get(impl: str, name: str, results: Any, recheck: float = 60.0) -> None:
    """Block in get() with the safety re-check pushed far away: only the doorbell wakes us."""
    from mncore._fast import _bell

    _bell.RECHECK_INTERVAL = recheck
    mailbox = classes(impl)[0].attach(name)
    try:
        started = time.monotonic()
        data = mailbox.get(timeout=120)
        results.put((data, time.monotonic() - started))
    finally:
        mailbox.close()


def put_big_then_die(impl: str, name: str, size: int) -> None:
    """Start streaming a record nobody reads and die by SIGKILL while owning the stream."""
    import threading

    mailbox = classes(impl)[0].attach(name)
    threading.Thread(target=mailbox.put, args=(b"\x01" * size,), daemon=True).start()
    while not (mailbox.stats()["streaming"] and mailbox.stats()["producers_waiting"]):
        time.sleep(0.005)
    os.kill(os.getpid(), signal.SIGKILL)


# ---- slot table ------------------------------------------------------------------------------


def hold_lease(impl: str, name: str, pool: str, slots: int, lease_id: str, ready: Any) -> None:
    """Acquire with our own pid, then hang until killed."""
    table = classes(impl)[1].attach(name)
    ok = table.acquire(pool, slots, os.getpid(), lease_id, timeout=30)
    ready.put(ok)
    time.sleep(120)


def queue_and_hang(impl: str, name: str, pool: str, slots: int, lease_id: str, ready: Any) -> None:
    table = classes(impl)[1].attach(name)
    ready.put(table.enqueue(pool, slots, os.getpid(), lease_id))
    time.sleep(120)


def fifo_waiter(impl: str, name: str, pool: str, lease_id: str, results: Any) -> None:
    """Wait for one slot, report the grant, hold it briefly, release it."""
    table = classes(impl)[1].attach(name)
    try:
        ok = table.acquire(pool, 1, os.getpid(), lease_id, timeout=60)
        results.put((lease_id, ok, table.stats()[pool]["in_use"]))
        time.sleep(0.01)
        table.release(lease_id)
    finally:
        table.close()


# ---- segments --------------------------------------------------------------------------------


def create_and_hang(impl: str, prefix: str, ready: Any) -> None:
    mailbox_cls, table_cls = classes(impl)
    mailbox = mailbox_cls.create(f"{prefix}mailbox", capacity=4096)
    table = table_cls.create(f"{prefix}slots", {"default": 2})
    ready.put((mailbox.name, table.name))
    time.sleep(120)


def idle_get(impl: str, name: str, ready: Any) -> None:
    mailbox = classes(impl)[0].attach(name)
    ready.put(os.getpid())
    mailbox.get(timeout=120)


def die_holding_lock(kind: str, name: str) -> None:
    """Take the segment lock, scribble a derived counter, and die inside the critical section."""
    from mncore._fast import PyMailbox, PySlotTable, layout

    handle = PyMailbox.attach(name) if kind == "mailbox" else PySlotTable.attach(name)
    handle._enter()
    offset = layout.MB_COUNT if kind == "mailbox" else layout.ST_POOLS + layout.POOL_IN_USE
    handle._mm[offset : offset + 4] = struct.pack("=I", 999)
    os.kill(os.getpid(), signal.SIGKILL)
