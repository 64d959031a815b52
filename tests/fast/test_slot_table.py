"""SlotTable: leases and FIFO pools (executor-contract §13), for both implementations."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import fast_workers as w
import pytest
from fast_impls import CYTHON_SKIP

from mncore.errors import RetryLaterError, ValidationError

ME = os.getpid()


def _wait_for(cond: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition never became true"
        time.sleep(0.01)


def test_stats_shape_and_spec_example(table_cls: Any, shm_name: Callable[[], str]) -> None:
    """capacity 1, one holder, one waiter -> queued 1, in_use 1; release hands over ->
    queued 0, in_use 1; second release -> in_use 0, available 1."""
    with table_cls.create(shm_name(), {"default": 1}) as table:
        assert table.stats() == {"default": {"capacity": 1, "in_use": 0, "available": 1, "queued": 0, "active": 0}}
        assert table.try_acquire("default", 1, ME, "holder")
        result: list[bool] = []
        waiter = threading.Thread(target=lambda: result.append(table.acquire("default", 1, ME, "waiter", timeout=30)))
        waiter.start()
        _wait_for(lambda: table.stats()["default"]["queued"] == 1)
        assert table.stats()["default"] == {"capacity": 1, "in_use": 1, "available": 0, "queued": 1, "active": 1}
        assert table.release("holder")
        waiter.join(30)
        assert result == [True]
        assert table.stats()["default"] == {"capacity": 1, "in_use": 1, "available": 0, "queued": 0, "active": 1}
        assert table.release("waiter")
        assert table.stats()["default"] == {"capacity": 1, "in_use": 0, "available": 1, "queued": 0, "active": 0}


def test_errors_use_the_spec_strings(table_cls: Any, shm_name: Callable[[], str]) -> None:
    with table_cls.create(shm_name(), {"default": 2}) as table:
        for method in (table.try_acquire, table.enqueue, table.acquire):
            with pytest.raises(ValidationError, match='^unknown executor pool "gpu"$'):
                method("gpu", 0, ME, "x")  # the unknown pool is reported before the bad slots
            for bad in (0, -1, 1.5, True, "1", None):
                with pytest.raises(ValidationError, match="^executor slots must be a positive integer$"):
                    method("default", bad, ME, "x")
            with pytest.raises(ValidationError, match="^requested 3 executor slots but pool capacity is 2$"):
                method("default", 3, ME, "x")
        with pytest.raises(ValidationError, match='^unknown executor pool "gpu"$'):
            table.set_capacity("gpu", 1)
        with pytest.raises(ValidationError, match="lease_id"):
            table.try_acquire("default", 1, ME, "x" * 41)
        assert table.try_acquire("default", 1, ME, "dup")
        with pytest.raises(ValidationError, match="already in use"):
            table.enqueue("default", 1, ME, "dup")
        assert table.stats()["default"]["active"] == 1


def test_try_acquire_respects_the_queue(table_cls: Any, shm_name: Callable[[], str]) -> None:
    with table_cls.create(shm_name(), {"default": 3}) as table:
        assert table.try_acquire("default", 2, ME, "a")
        assert table.enqueue("default", 2, ME, "b") is False  # head: does not fit
        assert table.stats()["default"]["available"] == 1
        assert table.try_acquire("default", 1, ME, "c") is False  # fits, but the queue is not empty
        assert table.enqueue("default", 1, ME, "c") is False  # head-of-line blocking
        assert [r["lease_id"] for r in table.queue()] == ["b", "c"]
        assert table.poll("b") == "queued"
        assert table.release("a")
        assert table.poll("b") == table.poll("c") == "granted"  # b (2) and c (1) both fit now
        assert table.stats()["default"] == {"capacity": 3, "in_use": 3, "available": 0, "queued": 0, "active": 2}
        assert table.poll("a") is None


def test_timed_out_head_is_removed(table_cls: Any, shm_name: Callable[[], str]) -> None:
    with table_cls.create(shm_name(), {"default": 2}) as table:
        assert table.try_acquire("default", 1, ME, "holder")
        started = time.monotonic()
        result: list[bool] = []
        head = threading.Thread(target=lambda: result.append(table.acquire("default", 2, ME, "head", timeout=0.3)))
        head.start()
        _wait_for(lambda: table.stats()["default"]["queued"] == 1)
        assert table.enqueue("default", 1, ME, "small") is False  # blocked behind the head
        head.join(30)
        assert result == [False]
        assert time.monotonic() - started >= 0.3
        assert table.poll("head") is None
        assert table.poll("small") == "granted"  # the withdrawn head no longer blocks it
        assert table.stats()["default"]["queued"] == 0


def test_cancel_release_poll(table_cls: Any, shm_name: Callable[[], str]) -> None:
    with table_cls.create(shm_name(), {"default": 1, "gpu": 4}) as table:
        assert table.try_acquire("gpu", 4, ME, b"bytes-id")
        assert table.enqueue("gpu", 1, ME, "q") is False
        assert table.cancel(b"bytes-id") is False  # granted: cancel only withdraws waiters
        assert table.cancel("q") is True
        assert table.cancel("q") is False
        assert table.release("nope") is False
        assert table.release(b"bytes-id") is True
        assert table.release("bytes-id") is False
        assert table.acquire("default", 1, ME, "t0", timeout=0) is True
        assert table.acquire("default", 1, ME, "t1", timeout=0) is False  # timeout 0 never queues
        assert table.stats()["default"]["queued"] == 0


def test_capacity_changes_never_revoke(table_cls: Any, shm_name: Callable[[], str]) -> None:
    with table_cls.create(shm_name(), {"default": 4}) as table:
        assert table.try_acquire("default", 3, ME, "big")
        table.set_capacity("default", 1)
        assert table.stats()["default"] == {"capacity": 1, "in_use": 3, "available": 0, "queued": 0, "active": 1}
        with pytest.raises(ValidationError, match="pool capacity is 1"):
            table.try_acquire("default", 2, ME, "x")
        assert table.enqueue("default", 1, ME, "w") is False
        table.set_capacity("default", 5)
        assert table.poll("w") == "granted"
        with pytest.raises(ValidationError, match="capacity"):
            table.set_capacity("default", 0)


def test_leases_and_queue_records(table_cls: Any, shm_name: Callable[[], str]) -> None:
    with table_cls.create(shm_name(), {"default": 1, "io": 2}) as table:
        before = int(time.time() * 1000)
        table.try_acquire("io", 2, ME, "lease-1")
        table.enqueue("io", 1, 1, "wait-1")
        (lease,) = table.leases()
        assert lease == {
            "lease_id": "lease-1",
            "pool": "io",
            "slots": 2,
            "owner_pid": ME,
            "requested_at_ms": lease["requested_at_ms"],
            "acquired_at_ms": lease["acquired_at_ms"],
            "state": "granted",
        }
        assert before - 5 <= lease["requested_at_ms"] <= lease["acquired_at_ms"] <= int(time.time() * 1000) + 5
        assert [(r["lease_id"], r["state"], r["acquired_at_ms"]) for r in table.queue()] == [("wait-1", "queued", None)]
        assert table.pools == ["default", "io"]


def test_record_grant_mirror(table_cls: Any, shm_name: Callable[[], str]) -> None:
    """The LeaseManager mirror API: grants decided elsewhere, recorded as they are."""
    with table_cls.create(shm_name(), {"default": 1}) as table:
        table.record_grant("default", "m1", 1)
        table.record_grant("default", "m2", 1)  # over capacity: the manager decided, we record
        assert table.stats()["default"] == {"capacity": 1, "in_use": 2, "available": 0, "queued": 0, "active": 2}
        assert table.record_release("m1") and table.record_release("m2")
        assert table.stats()["default"]["in_use"] == 0


def test_table_full(table_cls: Any, shm_name: Callable[[], str]) -> None:
    with table_cls.create(shm_name(), {"default": 10}, max_leases=3) as table:
        for i in range(3):
            table.try_acquire("default", 1, ME, f"l{i}")
        with pytest.raises(RetryLaterError, match="max_leases"):
            table.enqueue("default", 1, ME, "l3")
        table.release("l1")
        assert table.try_acquire("default", 1, ME, "l3")


def test_create_validation(table_cls: Any, shm_name: Callable[[], str]) -> None:
    for pools in ({}, {"": 1}, {"x" * 47: 1}, {"a": 0}):
        with pytest.raises((ValueError, ValidationError)):
            table_cls.create(shm_name(), pools)


async def test_acquire_async(table_cls: Any, shm_name: Callable[[], str]) -> None:
    with table_cls.create(shm_name(), {"default": 1}) as table:
        assert await table.acquire_async("default", 1, ME, "a", timeout=1)
        waiters = [asyncio.ensure_future(table.acquire_async("default", 1, ME, f"w{i}", timeout=10)) for i in range(2)]
        await asyncio.sleep(0.05)
        assert table.stats()["default"]["queued"] == 2
        assert await table.acquire_async("default", 1, ME, "late", timeout=0.05) is False
        threading.Thread(target=table.release, args=("a",)).start()
        done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        assert done == {waiters[0]}  # FIFO: w0 first
        table.release("w0")
        assert await waiters[1] is True
        assert isinstance(table.fileno(), int)


async def test_acquire_async_cancelled_gives_back(table_cls: Any, shm_name: Callable[[], str]) -> None:
    with table_cls.create(shm_name(), {"default": 1}) as table:
        table.try_acquire("default", 1, ME, "a")
        task = asyncio.ensure_future(table.acquire_async("default", 1, ME, "b"))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert table.poll("b") is None
        assert table.stats()["default"]["queued"] == 0


# ---- across processes --------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["spawn", "fork"])
def test_fifo_order_across_processes(
    method: str, impl: str, shm_name: Callable[[], str], ctx_for: Callable[[str], Any]
) -> None:
    """Waiters in several processes (implementations mixed) are granted in the order they queued."""
    ctx = ctx_for(method)
    impls = ["python"] if CYTHON_SKIP else ["python", "cython"]
    table = w.classes(impl)[1].create(shm_name(), {"default": 1})
    results = ctx.Queue()
    try:
        assert table.try_acquire("default", 1, ME, "parent")
        order = [f"w{i}" for i in range(4)]
        for i, lease_id in enumerate(order):
            args = (impls[i % len(impls)], table.name, "default", lease_id, results)
            proc = ctx.Process(target=w.fifo_waiter, args=args)
            proc.start()
            _wait_for(lambda i=i: table.stats()["default"]["queued"] == i + 1)
        assert [r["lease_id"] for r in table.queue()] == order
        table.release("parent")
        granted = [results.get(timeout=30) for _ in order]
        assert [g[0] for g in granted] == order
        assert all(ok and in_use == 1 for _, ok, in_use in granted)
        _wait_for(lambda: table.stats()["default"]["active"] == 0)
    finally:
        table.close()


def test_reclaim_dead_after_kill(impl: str, shm_name: Callable[[], str], ctx_for: Callable[[str], Any]) -> None:
    ctx = ctx_for("fork")
    table = w.classes(impl)[1].create(shm_name(), {"default": 2})
    ready = ctx.Queue()
    try:
        holder = ctx.Process(target=w.hold_lease, args=(impl, table.name, "default", 2, "doomed", ready))
        holder.start()
        assert ready.get(timeout=30) is True
        waiter = ctx.Process(target=w.queue_and_hang, args=(impl, table.name, "default", 1, "doomed-waiter", ready))
        waiter.start()
        assert ready.get(timeout=30) is False
        assert table.enqueue("default", 1, ME, "alive") is False  # behind the dead process's waiter
        assert table.stats()["default"] == {"capacity": 2, "in_use": 2, "available": 0, "queued": 2, "active": 1}
        for proc in (holder, waiter):
            os.kill(proc.pid, signal.SIGKILL)
            proc.join(10)
        reclaimed = table.reclaim_dead()
        assert sorted((r["lease_id"], r["state"], r["owner_pid"]) for r in reclaimed) == [
            ("doomed", "granted", holder.pid),
            ("doomed-waiter", "queued", waiter.pid),
        ]
        assert table.poll("alive") == "granted"
        assert table.stats()["default"] == {"capacity": 2, "in_use": 1, "available": 1, "queued": 0, "active": 1}
        assert table.reclaim_dead() == []
    finally:
        table.close()


def test_lock_holder_killed_inside_critical_section(
    impl: str, shm_name: Callable[[], str], ctx_for: Callable[[str], Any]
) -> None:
    ctx = ctx_for("fork")
    table = w.classes(impl)[1].create(shm_name(), {"default": 3})
    try:
        table.try_acquire("default", 2, ME, "a")
        child = ctx.Process(target=w.die_holding_lock, args=("slots", table.name))
        child.start()
        child.join(30)
        assert child.exitcode == -signal.SIGKILL
        assert table.stats()["default"] == {"capacity": 3, "in_use": 2, "available": 1, "queued": 0, "active": 1}
        assert table.try_acquire("default", 1, ME, "b")
    finally:
        table.close()
