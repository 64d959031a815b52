"""Executor pools and leases (executor-contract.md §13) on the shared slot table."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from mncore.errors import ValidationError
from mncore.execution.leases import Lease, LeaseManager, RetryLater


@pytest.fixture
def leases() -> Iterator[LeaseManager]:
    manager = LeaseManager({"default": 1, "wide": 3})
    yield manager
    manager.close()


async def _lease(manager: LeaseManager, pool: str = "default", slots: int = 1, **kw: object) -> Lease:
    got = await manager.acquire(pool, slots, {"job_id": "j"}, **kw)  # type: ignore[arg-type]
    assert isinstance(got, Lease)
    return got


async def test_errors_are_exact(leases: LeaseManager) -> None:
    with pytest.raises(ValidationError, match='^unknown executor pool "nope"$'):
        await leases.acquire("nope", 1)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValidationError, match="^executor slots must be a positive integer$"):
            await leases.acquire("default", bad)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="^requested 4 executor slots but pool capacity is 3$"):
        await leases.acquire("wide", 4)


async def test_spec_stats_example(leases: LeaseManager) -> None:
    first = await _lease(leases)
    waiter = asyncio.ensure_future(leases.acquire("default", 1))
    await asyncio.sleep(0)
    assert leases.stats()["default"] == {"capacity": 1, "in_use": 1, "available": 0, "queued": 1, "active": 1}
    assert leases.release(first.lease_id)
    second = await waiter
    assert isinstance(second, Lease) and second.queue_wait_ms >= 0
    assert leases.stats()["default"] == {"capacity": 1, "in_use": 1, "available": 0, "queued": 0, "active": 1}
    leases.release(second.lease_id)
    assert leases.stats()["default"] == {"capacity": 1, "in_use": 0, "available": 1, "queued": 0, "active": 0}
    assert not leases.release(second.lease_id)


async def test_strict_fifo_with_head_of_line_blocking(leases: LeaseManager) -> None:
    held = await _lease(leases, "wide", 2)
    big = asyncio.ensure_future(leases.acquire("wide", 3))
    small = asyncio.ensure_future(leases.acquire("wide", 1))
    await asyncio.sleep(0.01)
    assert not big.done() and not small.done()  # 1 slot is free, but the small one waits behind the big one
    leases.release(held.lease_id)
    got_big = await big
    assert isinstance(got_big, Lease) and not small.done()
    leases.release(got_big.lease_id)
    assert isinstance(await small, Lease)


async def test_queue_timeout_and_full_answer_retry_later(leases: LeaseManager) -> None:
    held = await _lease(leases)
    timed = await leases.acquire("default", 1, queue_timeout_ms=30)
    assert isinstance(timed, RetryLater)
    assert timed.details["reason"] == "executor_pool_queue_timeout" and timed.details["retry_after_ms"] == 250
    assert timed.details["timeout_ms"] == 30 and timed.details["queue_wait_ms"] >= 25
    assert leases.stats()["default"]["queued"] == 0  # the timed-out request left the queue
    parked = asyncio.ensure_future(leases.acquire("default", 1))
    await asyncio.sleep(0)
    full = await leases.acquire("default", 1, max_queue_length=1)
    assert isinstance(full, RetryLater)
    assert full.details == {
        "reason": "executor_pool_queue_full",
        "pool": "default",
        "slots": 1,
        "queued": 1,
        "max_queue_length": 1,
        "retry_after_ms": 250,
    }
    leases.release(held.lease_id)
    assert isinstance(await parked, Lease)


async def test_cancelled_waiter_leaves_queue_and_unblocks(leases: LeaseManager) -> None:
    held = await _lease(leases, "wide", 2)
    big = asyncio.ensure_future(leases.acquire("wide", 3))
    small = asyncio.ensure_future(leases.acquire("wide", 1))
    await asyncio.sleep(0.01)
    big.cancel()
    assert isinstance(await small, Lease)  # the blocker left: the small one fits now
    assert leases.stats()["wide"]["queued"] == 0
    leases.release(held.lease_id)


async def test_cpu_limit_scales_capacity_without_revoking(leases: LeaseManager) -> None:
    manager = LeaseManager({"default": 8})
    try:
        held = [await _lease(manager) for _ in range(6)]
        manager.set_cpu_limit(25)
        stats = manager.stats()["default"]
        assert stats["capacity"] == 2 and stats["in_use"] == 6 and stats["available"] == 0
        manager.set_cpu_limit(100)
        assert manager.stats()["default"]["available"] == 2
        for lease in held:
            manager.release(lease.lease_id)
    finally:
        manager.close()


async def test_release_where_and_draining(leases: LeaseManager) -> None:
    held = await _lease(leases)
    waiter = asyncio.ensure_future(leases.acquire("default", 1))
    await asyncio.sleep(0)
    leases.start_draining()
    assert [lease.lease_id for lease in leases.release_where(job_id="j")] == [held.lease_id]
    await asyncio.sleep(0.01)
    assert not waiter.done()  # draining: nothing new is granted
    assert leases.stats()["default"]["in_use"] == 0
    waiter.cancel()
