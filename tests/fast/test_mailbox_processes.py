"""Mailbox across processes: one implementation writes, the other reads; MPMC stress; doorbell."""

from __future__ import annotations

import os
import signal
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import fast_workers as w
import psutil
import pytest
from fast_impls import impl_params, pair_params


@pytest.mark.parametrize("method", ["spawn", "fork"])
@pytest.mark.parametrize(("writer", "reader"), pair_params())
def test_cross_implementation(
    writer: str, reader: str, method: str, shm_name: Callable[[], str], ctx_for: Callable[[str], Any]
) -> None:
    ctx = ctx_for(method)
    payloads = [os.urandom(n) for n in (0, 1, 100, 1000, 2100, 9000, 50)] * 20  # 9000 > ring: streamed
    mb = w.classes(reader)[0].create(shm_name(), capacity=8192)
    try:
        child = ctx.Process(target=w.write_sequence, args=(writer, mb.name, payloads))
        child.start()
        got = [mb.get(timeout=60) for _ in payloads]
        child.join(30)
        assert child.exitcode == 0
        assert got == payloads
        # and back: the parent writes with `reader`'s class, a child reads with `writer`'s
        results = ctx.Queue()
        child = ctx.Process(target=w.read_sequence, args=(writer, mb.name, len(payloads), results))
        child.start()
        for data in payloads:
            assert mb.put(data, timeout=60)
        assert results.get(timeout=60) == payloads
        child.join(30)
        assert child.exitcode == 0
    finally:
        mb.close()


@pytest.mark.parametrize("creator", impl_params("python", "cython"))
def test_mpmc_stress_exactly_once_in_order(
    creator: str, shm_name: Callable[[], str], ctx_for: Callable[[str], Any]
) -> None:
    """3 producers and 3 consumers (implementations mixed), records of varied sizes with some
    streamed ones, a small ring: everything arrives once, in order per producer per consumer."""
    from fast_impls import CYTHON_SKIP

    impls = ["python"] if CYTHON_SKIP else ["python", "cython"]
    ctx = ctx_for("fork")
    per_producer, producers, consumers = 3000, 3, 3
    mb = w.classes(creator)[0].create(shm_name(), capacity=8192)
    results = ctx.Queue()
    try:
        cons = [
            ctx.Process(target=w.consume, args=(impls[i % len(impls)], mb.name, results, 1 + 7 * (i % 2)))
            for i in range(consumers)
        ]
        prods = [
            ctx.Process(target=w.produce, args=(impls[(i + 1) % len(impls)], mb.name, i, per_producer, 5000, 300))
            for i in range(producers)
        ]
        for proc in cons + prods:
            proc.start()
        for proc in prods:
            proc.join(120)
            assert proc.exitcode == 0
        assert mb.put_many([w.STOP] * consumers, timeout=60) == consumers
        reports = [results.get(timeout=120) for _ in cons]
        for proc in cons:
            proc.join(30)
            assert proc.exitcode == 0
    finally:
        mb.close()
    everything: list[tuple[int, int]] = []
    for _pid, seen, bad in reports:
        assert bad == 0
        everything.extend(seen)
        by_producer: dict[int, list[int]] = defaultdict(list)
        for producer, seq in seen:
            by_producer[producer].append(seq)
        for seqs in by_producer.values():
            assert seqs == sorted(seqs), "per-producer order broken"
    assert len(everything) == len(set(everything)) == producers * per_producer
    assert set(everything) == {(p, s) for p in range(producers) for s in range(per_producer)}


@pytest.mark.parametrize(("writer", "reader"), [*pair_params(), pytest.param("python", "python", id="py-py")])
def test_doorbell_wakes_parked_consumer(
    writer: str, reader: str, shm_name: Callable[[], str], ctx_for: Callable[[str], Any]
) -> None:
    """The consumer's safety re-check is set to 60 s: only the doorbell can wake it in time."""
    ctx = ctx_for("spawn")
    mb = w.classes(writer)[0].create(shm_name(), capacity=4096)
    results = ctx.Queue()
    try:
        child = ctx.Process(target=w.parked_get, args=(reader, mb.name, results))
        child.start()
        deadline = time.monotonic() + 30
        while mb.stats()["consumers_waiting"] == 0:
            assert time.monotonic() < deadline, "consumer never parked"
            time.sleep(0.01)
        time.sleep(0.1)
        assert mb.put(b"wake up")
        data, _waited = results.get(timeout=20)
        assert data == b"wake up"
        child.join(10)
    finally:
        mb.close()


def test_idle_consumer_uses_no_cpu(impl: str, shm_name: Callable[[], str], ctx_for: Callable[[str], Any]) -> None:
    ctx = ctx_for("fork")
    mb = w.classes(impl)[0].create(shm_name(), capacity=4096)
    ready = ctx.Queue()
    try:
        child = ctx.Process(target=w.idle_get, args=(impl, mb.name, ready))
        child.start()
        proc = psutil.Process(ready.get(timeout=30))
        deadline = time.monotonic() + 30
        while mb.stats()["consumers_waiting"] == 0:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        before = proc.cpu_times()
        time.sleep(0.5)
        after = proc.cpu_times()
        used = (after.user + after.system) - (before.user + before.system)
        assert used < 0.05, f"idle consumer burnt {used:.3f} s of CPU in 0.5 s"
        mb.put(b"bye")
        child.join(10)
        assert child.exitcode == 0
    finally:
        mb.close()


@pytest.mark.parametrize(("writer", "reader"), [*pair_params(), pytest.param("python", "python", id="py-py")])
def test_producer_killed_mid_stream(
    writer: str, reader: str, shm_name: Callable[[], str], ctx_for: Callable[[str], Any]
) -> None:
    """A producer SIGKILLed while streaming a big record: the reader drops the partial record,
    other producers are not blocked by the dead stream owner, later records flow."""
    ctx = ctx_for("fork")
    mb = w.classes(reader)[0].create(shm_name(), capacity=2048)
    try:
        child = ctx.Process(target=w.put_big_then_die, args=(writer, mb.name, 20_000))
        child.start()
        child.join(30)
        assert child.exitcode == -signal.SIGKILL
        assert mb.stats()["streaming"] == 1  # the dead producer still owns the write stream
        other = w.classes(writer)[0].attach(mb.name)
        try:
            got: list[bytes | None] = []
            assert mb.get(timeout=0.3) is None  # partial record: dropped once its writer is seen dead
            assert other.put(b"after", timeout=10)
            got.append(mb.get(timeout=10))
            assert got == [b"after"]
            assert mb.stats()["records"] == 0
        finally:
            other.close()
    finally:
        mb.close()


def test_lock_holder_killed_inside_critical_section(
    impl: str, shm_name: Callable[[], str], ctx_for: Callable[[str], Any]
) -> None:
    """The robust mutex hands EOWNERDEAD to the next locker, which repairs the derived counters."""
    ctx = ctx_for("fork")
    mb = w.classes(impl)[0].create(shm_name(), capacity=4096)
    try:
        mb.put_many([b"one", b"two", b"three"])
        child = ctx.Process(target=w.die_holding_lock, args=("mailbox", mb.name))
        child.start()
        child.join(30)
        assert child.exitcode == -signal.SIGKILL
        assert mb.stats()["records"] == 3  # recounted from head..tail, not the scribbled 999
        assert mb.get_many(10) == [b"one", b"two", b"three"]
        assert mb.put(b"after", timeout=1) and mb.get(timeout=1) == b"after"
    finally:
        mb.close()
