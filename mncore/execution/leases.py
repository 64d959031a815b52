"""Executor pools and slot leases inside one process (executor-contract.md §13).

Strict FIFO grant order with head-of-line blocking, optional queue timeout and queue cap
answering "retry later", stats exactly ``capacity, in_use, available, queued, active``.
The CPU resource limit scales effective capacities; running leases are never revoked.

The multiprocess runtime keeps the same bookkeeping in a shared-memory slot table
(``mncore._fast.SlotTable``) through :meth:`LeaseManager.attach_table`, so any process can read
pool stats without a round trip.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from .._util import new_id
from ..errors import ValidationError

logger = logging.getLogger(__name__)

__all__ = ["Lease", "LeaseManager", "RetryLater"]

RETRY_AFTER_MS = 250


@dataclass
class Lease:
    lease_id: str
    pool: str
    slots: int
    queue_wait_ms: int
    requested_at_ms: float
    acquired_at_ms: float
    metadata: dict[str, Any] = field(default_factory=dict)

    def ref(self) -> dict[str, Any]:
        return {"lease_id": self.lease_id, "pool": self.pool, "slots": self.slots}


@dataclass
class RetryLater:
    """Answer of :meth:`LeaseManager.acquire` when a queue limit was hit."""

    details: dict[str, Any]


class _Waiter:
    __slots__ = ("future", "metadata", "requested_at", "slots")

    def __init__(self, slots: int, metadata: dict[str, Any], future: asyncio.Future[Lease]) -> None:
        self.slots = slots
        self.metadata = metadata
        self.future = future
        self.requested_at = time.monotonic() * 1000.0


class _Pool:
    __slots__ = ("configured", "effective", "in_use", "leases", "name", "queue")

    def __init__(self, name: str, capacity: int) -> None:
        self.name = name
        self.configured = capacity
        self.effective = capacity
        self.in_use = 0
        self.leases: dict[str, Lease] = {}
        self.queue: deque[_Waiter] = deque()


class LeaseManager:
    """Named pools of slots on this node; ``acquire`` waits in strict FIFO order."""

    def __init__(self, capacities: dict[str, int], cpu_limit: int = 100) -> None:
        self._pools = {name: _Pool(name, cap) for name, cap in capacities.items()}
        self._by_id: dict[str, _Pool] = {}
        self._cpu_limit = 100
        self._table: Any = None
        self.draining = False  # node shutdown: grant nothing new
        self.set_cpu_limit(cpu_limit)

    # -- configuration -------------------------------------------------------------------
    def set_cpu_limit(self, percent: int) -> None:
        """Scale every pool's effective capacity: ``max(1, floor(capacity * percent / 100))``."""
        self._cpu_limit = percent
        for name, pool in self._pools.items():
            pool.effective = max(1, math.floor(pool.configured * percent / 100))
            if self._table is not None:
                self._table.set_capacity(name, pool.effective)
            self._grant(pool)

    def attach_table(self, table: Any) -> None:
        """Mirror grants into a shared-memory slot table (readable by every process)."""
        self._table = table
        for name, pool in self._pools.items():
            table.set_capacity(name, pool.effective)

    @property
    def pools(self) -> list[str]:
        return list(self._pools)

    # -- acquire / release ---------------------------------------------------------------
    def _check(self, pool_name: str, slots: Any) -> _Pool:
        pool = self._pools.get(pool_name)
        if pool is None:
            raise ValidationError(f'unknown executor pool "{pool_name}"')
        if not isinstance(slots, int) or isinstance(slots, bool) or slots < 1:
            raise ValidationError("executor slots must be a positive integer")
        if slots > pool.effective:
            raise ValidationError(f"requested {slots} executor slots but pool capacity is {pool.effective}")
        return pool

    async def acquire(
        self,
        pool_name: str,
        slots: int = 1,
        metadata: dict[str, Any] | None = None,
        *,
        queue_timeout_ms: int = 0,
        max_queue_length: int = 0,
    ) -> Lease | RetryLater:
        pool = self._check(pool_name, slots)
        meta = {str(k): v for k, v in (metadata or {}).items()}
        now = time.monotonic() * 1000.0
        if not pool.queue and not self.draining and pool.in_use + slots <= pool.effective:
            return self._issue(pool, slots, meta, now)
        if max_queue_length > 0 and len(pool.queue) >= max_queue_length:
            return RetryLater(
                {
                    "reason": "executor_pool_queue_full",
                    "pool": pool_name,
                    "slots": slots,
                    "queued": len(pool.queue),
                    "max_queue_length": max_queue_length,
                    "retry_after_ms": RETRY_AFTER_MS,
                }
            )
        waiter = _Waiter(slots, meta, asyncio.get_running_loop().create_future())
        pool.queue.append(waiter)
        try:
            if queue_timeout_ms > 0:
                return await asyncio.wait_for(asyncio.shield(waiter.future), queue_timeout_ms / 1000.0)
            return await asyncio.shield(waiter.future)
        except TimeoutError:
            if self._abandon(pool, waiter):
                waited = int(time.monotonic() * 1000.0 - waiter.requested_at)
                return RetryLater(
                    {
                        "reason": "executor_pool_queue_timeout",
                        "pool": pool_name,
                        "slots": slots,
                        "queue_wait_ms": waited,
                        "timeout_ms": queue_timeout_ms,
                        "retry_after_ms": RETRY_AFTER_MS,
                    }
                )
            return waiter.future.result()
        except asyncio.CancelledError:
            self._abandon(pool, waiter)
            raise

    def _abandon(self, pool: _Pool, waiter: _Waiter) -> bool:
        """Remove a waiter that gave up; a lease granted meanwhile is released. True if it was waiting."""
        if waiter.future.done():
            if not waiter.future.cancelled():
                self.release(waiter.future.result().lease_id)
            return False
        waiter.future.cancel()
        try:
            pool.queue.remove(waiter)
        except ValueError:
            pass
        self._grant(pool)  # the head may have been the blocker
        return True

    def _issue(self, pool: _Pool, slots: int, meta: dict[str, Any], requested: float) -> Lease:
        now = time.monotonic() * 1000.0
        lease = Lease(new_id(8), pool.name, slots, int(now - requested), requested, now, meta)
        pool.in_use += slots
        pool.leases[lease.lease_id] = lease
        self._by_id[lease.lease_id] = pool
        if self._table is not None:
            self._table.record_grant(pool.name, lease.lease_id, slots)
        return lease

    def _grant(self, pool: _Pool) -> None:
        while pool.queue and not self.draining:
            head = pool.queue[0]
            if head.future.done():
                pool.queue.popleft()
                continue
            if pool.in_use + head.slots > pool.effective:
                return  # strict FIFO: nothing behind a head that does not fit
            pool.queue.popleft()
            head.future.set_result(self._issue(pool, head.slots, head.metadata, head.requested_at))

    def release(self, lease_id: str) -> bool:
        pool = self._by_id.pop(lease_id, None)
        if pool is None:
            return False
        lease = pool.leases.pop(lease_id)
        pool.in_use -= lease.slots
        if self._table is not None:
            self._table.record_release(lease_id)
        self._grant(pool)
        return True

    def release_where(self, **match: Any) -> list[Lease]:
        """Release every lease whose metadata matches (e.g. ``job_id=...``); returns them."""
        found = [
            lease
            for pool in self._pools.values()
            for lease in list(pool.leases.values())
            if all(lease.metadata.get(k) == v for k, v in match.items())
        ]
        for lease in found:
            self.release(lease.lease_id)
        return found

    # -- read model ------------------------------------------------------------------------
    def stats(self) -> dict[str, dict[str, int]]:
        return {
            name: {
                "capacity": pool.effective,
                "in_use": pool.in_use,
                "available": max(pool.effective - pool.in_use, 0),
                "queued": sum(1 for w in pool.queue if not w.future.done()),
                "active": len(pool.leases),
            }
            for name, pool in self._pools.items()
        }

    def leases(self) -> list[Lease]:
        return [lease for pool in self._pools.values() for lease in pool.leases.values()]
