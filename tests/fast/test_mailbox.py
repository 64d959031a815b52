"""Mailbox behaviour in one process, for both implementations."""

from __future__ import annotations

import asyncio
import os
import pickle
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from mncore._fast import PyMailbox, PySlotTable


def test_put_get_in_order(mailbox_cls: Any, shm_name: Callable[[], str]) -> None:
    with mailbox_cls.create(shm_name(), capacity=4096) as mb:
        payloads = [b"", b"a", b"hello", os.urandom(100), bytes(range(256))]
        for data in payloads:
            assert mb.put(data) is True
        assert [mb.get(timeout=0) for _ in payloads] == payloads
        assert mb.get(timeout=0) is None


def test_buffers_other_than_bytes(mailbox_cls: Any, shm_name: Callable[[], str]) -> None:
    with mailbox_cls.create(shm_name(), capacity=4096) as mb:
        mb.put(bytearray(b"ba"))
        mb.put(memoryview(b"xmvx")[1:3])
        mb.put(memoryview(bytes(8)).cast("Q"))
        assert mb.get_many(10) == [b"ba", b"mv", bytes(8)]


def test_name_attach_and_lifecycle(mailbox_cls: Any, shm_name: Callable[[], str]) -> None:
    name = shm_name()
    mb = mailbox_cls.create(name.removeprefix("mn_"), capacity=2048)
    assert mb.name == name
    assert os.path.exists(f"/dev/shm/{name}")
    other = mailbox_cls.attach(name.removeprefix("mn_"))
    mb.put(b"x")
    assert other.get(timeout=0) == b"x"
    other.close()
    other.close()  # idempotent
    with pytest.raises(ValueError, match="closed"):
        other.get(timeout=0)
    mb.unlink()
    mb.unlink()  # idempotent
    assert not os.path.exists(f"/dev/shm/{name}")
    assert mb.put(b"still mapped") is True
    mb.close()
    with pytest.raises(FileNotFoundError):
        mailbox_cls.attach(name)


def test_attach_rejects_other_structures(mailbox_cls: Any, shm_name: Callable[[], str]) -> None:
    table = PySlotTable.create(shm_name(), {"default": 1})
    try:
        with pytest.raises(ValueError, match="not a mailbox"):
            mailbox_cls.attach(table.name)
    finally:
        table.close()


def test_pickles_by_name(mailbox_cls: Any, shm_name: Callable[[], str]) -> None:
    with mailbox_cls.create(shm_name(), capacity=2048) as mb:
        clone = pickle.loads(pickle.dumps(mb))
        try:
            clone.put(b"via clone")
            assert mb.get(timeout=0) == b"via clone"
        finally:
            clone.close()


def test_stats_shape(mailbox_cls: Any, shm_name: Callable[[], str]) -> None:
    with mailbox_cls.create(shm_name(), capacity=1000) as mb:
        mb.put(b"x" * 10)
        stats = mb.stats()
        assert stats["records"] == 1
        assert stats["bytes_used"] == 24  # 8-byte header + 10 bytes padded to 8
        assert stats["capacity"] == 1024  # at least MIN_CAPACITY, 8-aligned
        assert stats["max_record"] == mb.max_record == 1024 // 4 - 8
        assert stats["consumers_waiting"] == stats["producers_waiting"] == stats["streaming"] == 0


def test_back_pressure(mailbox_cls: Any, shm_name: Callable[[], str]) -> None:
    with mailbox_cls.create(shm_name(), capacity=2048) as mb:
        record = b"r" * 100
        count = 0
        while mb.put(record, timeout=0):
            count += 1
        assert count == 2048 // 112
        assert mb.stats()["bytes_used"] <= 2048
        started = time.monotonic()
        assert mb.put(record, timeout=0.05) is False
        assert time.monotonic() - started >= 0.05
        assert mb.put_many([record, record], timeout=0) == 0
        assert mb.get(timeout=0) == record
        assert mb.put(record, timeout=0) is True
        assert len(mb.get_many(1000)) == count


def test_put_waits_for_space(mailbox_cls: Any, shm_name: Callable[[], str]) -> None:
    with mailbox_cls.create(shm_name(), capacity=1024) as mb:
        while mb.put(b"f" * 50, timeout=0):
            pass
        drained: list[bytes] = []
        timer = threading.Timer(0.2, lambda: drained.extend(mb.get_many(3)))
        timer.start()
        assert mb.put(b"late", timeout=10) is True
        timer.join()
        assert len(drained) == 3


def test_wrap_around_integrity(mailbox_cls: Any, shm_name: Callable[[], str]) -> None:
    with mailbox_cls.create(shm_name(), capacity=1024) as mb:
        pending: list[bytes] = []
        for i in range(3000):
            data = bytes([i & 0xFF]) * ((i * 37) % (mb.max_record + 1))
            while not mb.put(data, timeout=0):
                assert mb.get(timeout=0) == pending.pop(0)
            pending.append(data)
        while pending:
            assert mb.get(timeout=0) == pending.pop(0)
        assert mb.stats()["records"] == 0


def test_put_many_get_many(mailbox_cls: Any, shm_name: Callable[[], str]) -> None:
    with mailbox_cls.create(shm_name(), capacity=4096) as mb:
        records = [str(i).encode() for i in range(50)]
        assert mb.put_many(iter(records)) == 50
        assert mb.get_many(20) == records[:20]
        assert mb.get_many(100, timeout=0) == records[20:]
        assert mb.get_many(5, timeout=0) == []
        with pytest.raises(ValueError, match="max_records"):
            mb.get_many(0)


def test_get_timeout(mailbox_cls: Any, shm_name: Callable[[], str]) -> None:
    with mailbox_cls.create(shm_name(), capacity=1024) as mb:
        started = time.monotonic()
        assert mb.get(timeout=0.1) is None
        assert time.monotonic() - started >= 0.1
        assert mb.stats()["consumers_waiting"] == 0


@pytest.mark.parametrize("size_of", [lambda mb: mb.capacity // 2 + 8, lambda mb: mb.capacity * 5 + 3])
def test_big_records_are_streamed(mailbox_cls: Any, shm_name: Callable[[], str], size_of: Any) -> None:
    with mailbox_cls.create(shm_name(), capacity=4096) as mb:
        big = os.urandom(size_of(mb))
        got: list[bytes | None] = []
        consumer = threading.Thread(target=lambda: got.extend([mb.get(timeout=30), mb.get(timeout=30)]))
        consumer.start()
        assert mb.put(b"before", timeout=30)
        assert mb.put(big, timeout=30)
        consumer.join(30)
        assert got == [b"before", big]
        assert mb.stats()["records"] == 0
        assert mb.stats()["streaming"] == 0


def test_put_many_with_a_streamed_record(mailbox_cls: Any, shm_name: Callable[[], str]) -> None:
    with mailbox_cls.create(shm_name(), capacity=2048) as mb:
        records = [b"a", b"b", os.urandom(7000), b"c"]
        got: list[bytes] = []
        consumer = threading.Thread(target=lambda: got.extend(mb.get(timeout=30) or b"?" for _ in records))
        consumer.start()
        assert mb.put_many(records, timeout=30) == 4
        consumer.join(30)
        assert got == records


def test_abandoned_stream_is_discarded(mailbox_cls: Any, shm_name: Callable[[], str]) -> None:
    with mailbox_cls.create(shm_name(), capacity=2048) as mb:
        assert mb.put(b"x" * 10_000, timeout=0.1) is False  # nobody reads: gives up mid-stream
        assert mb.stats()["records"] > 0
        assert mb.get(timeout=0.1) is None  # reads the partial record, sees it abandoned, drops it
        assert mb.put(b"next", timeout=1)
        assert mb.get(timeout=1) == b"next"
        assert mb.stats()["records"] == 0


def test_thread_producers_and_consumers(mailbox_cls: Any, shm_name: Callable[[], str]) -> None:
    with mailbox_cls.create(shm_name(), capacity=2048) as mb:
        results: list[list[bytes]] = [[], []]

        def consume(out: list[bytes]) -> None:
            while (data := mb.get(timeout=30)) != b"stop":
                assert data is not None
                out.append(data)

        def produce(tag: int) -> None:
            for i in range(500):
                assert mb.put(f"{tag}:{i}".encode() + (b"z" * 3000 if i % 100 == 99 else b""), timeout=30)

        consumers = [threading.Thread(target=consume, args=(out,)) for out in results]
        producers = [threading.Thread(target=produce, args=(tag,)) for tag in range(2)]
        for t in consumers + producers:
            t.start()
        for t in producers:
            t.join(60)
        mb.put_many([b"stop", b"stop"])
        for t in consumers:
            t.join(60)
        everything = sorted(results[0] + results[1])
        assert len(everything) == len(set(everything)) == 1000
        for out in results:
            for tag in range(2):
                seqs = [int(d.split(b":")[1].rstrip(b"z")) for d in out if d.startswith(f"{tag}:".encode())]
                assert seqs == sorted(seqs)


async def test_get_async_wakes_and_times_out(mailbox_cls: Any, shm_name: Callable[[], str]) -> None:
    with mailbox_cls.create(shm_name(), capacity=2048) as mb:
        assert await mb.get_async(timeout=0.05) is None
        loop = asyncio.get_running_loop()
        loop.call_later(0.1, lambda: threading.Thread(target=mb.put, args=(b"ping",)).start())
        assert await mb.get_async(timeout=10) == b"ping"
        assert isinstance(mb.fileno(), int)
        assert await mb.wait_readable(timeout=0.05) is False
        mb.put(b"a")
        assert await mb.wait_readable(timeout=1) is True
        assert await mb.get_many_async(5, timeout=1) == [b"a"]


async def test_async_concurrent_waiters(mailbox_cls: Any, shm_name: Callable[[], str]) -> None:
    with mailbox_cls.create(shm_name(), capacity=2048) as mb:
        waiters = [asyncio.ensure_future(mb.get_async(timeout=10)) for _ in range(3)]
        await asyncio.sleep(0.1)
        assert mb.stats()["consumers_waiting"] == 3
        threading.Thread(target=mb.put_many, args=([b"1", b"2", b"3"],)).start()
        assert sorted(await asyncio.gather(*waiters)) == [b"1", b"2", b"3"]
        assert mb.stats()["consumers_waiting"] == 0


async def test_put_async_back_pressure(mailbox_cls: Any, shm_name: Callable[[], str]) -> None:
    with mailbox_cls.create(shm_name(), capacity=1024) as mb:
        while await mb.put_async(b"p" * 100, timeout=0):
            pass
        assert await mb.put_async(b"p" * 100, timeout=0.05) is False
        asyncio.get_running_loop().call_later(0.1, mb.get)
        assert await mb.put_async(b"fits", timeout=10) is True


def test_implementations_share_a_segment(shm_name: Callable[[], str], impl: str) -> None:
    """The same segment driven by both classes in one process, interleaved."""
    from fast_workers import classes

    other_cls = classes(impl)[0]
    py = PyMailbox.create(shm_name(), capacity=1024)
    other = other_cls.attach(py.name)
    try:
        for i in range(200):
            writer, reader = (py, other) if i % 2 else (other, py)
            assert writer.put(bytes([i]) * (i % 90))
            assert reader.get(timeout=0) == bytes([i]) * (i % 90)
    finally:
        other.close()
        py.close()
