"""Executor pools and slot leases (executor-contract.md §13), kept in the shared slot table.

The shared-memory :class:`~mncore._fast.SlotTable` is the lease engine: it holds capacities,
grants, the strict FIFO queue (head-of-line blocking) and the stats ``capacity, in_use,
available, queued, active`` that any process can read without a round trip. This module is its
asyncio face for the supervisor: ``acquire`` parks a future per queued request and wakes the
heads of the queue after every release, capacity change or withdrawal. Queue limits answer
"retry later"; the CPU resource limit scales effective capacities; running leases are never
revoked.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from .._fast import SlotTable
from .._util import new_id

logger = logging.getLogger(__name__)

__all__ = ["Lease", "LeaseManager", "RetryLater"]

RETRY_AFTER_MS = 250
MAX_LEASES = 1 << 16  # granted + queued requests the table can hold


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


@dataclass
class _Waiter:
    lease_id: str
    pool: str
    slots: int
    metadata: dict[str, Any]
    future: asyncio.Future[Lease]
    requested_at: float = field(default_factory=lambda: time.monotonic() * 1000.0)


def _ms() -> float:
    return time.monotonic() * 1000.0


class LeaseManager:
    """Named pools of slots on this node, backed by a shared-memory slot table."""

    def __init__(self, capacities: dict[str, int], cpu_limit: int = 100, *, table_name: str | None = None) -> None:
        self._configured = dict(capacities)
        self.table = SlotTable.create(table_name, self._configured, max_leases=MAX_LEASES)
        self._pid = os.getpid()
        self._queues: dict[str, deque[_Waiter]] = {name: deque() for name in capacities}
        self._leases: dict[str, Lease] = {}
        self.draining = False  # node shutdown: grant nothing new
        self.set_cpu_limit(cpu_limit)

    def close(self) -> None:
        """Unlink the table (the supervisor owns it)."""
        self.table.close()
        self.table.unlink()

    @property
    def pools(self) -> list[str]:
        return list(self._configured)

    def set_cpu_limit(self, percent: int) -> None:
        """Effective capacity of every pool: ``max(1, floor(capacity * percent / 100))``."""
        for name, capacity in self._configured.items():
            self.table.set_capacity(name, max(1, math.floor(capacity * percent / 100)))
        self._wake()

    def start_draining(self) -> None:
        """Node shutdown: withdraw every queued request; nothing is granted any more."""
        self.draining = True
        for queue in self._queues.values():
            for waiter in queue:
                self.table.cancel(waiter.lease_id)

    # -- acquire / release -----------------------------------------------------------------
    async def acquire(
        self,
        pool: str,
        slots: int = 1,
        metadata: dict[str, Any] | None = None,
        *,
        queue_timeout_ms: int = 0,
        max_queue_length: int = 0,
    ) -> Lease | RetryLater:
        meta = {str(k): v for k, v in (metadata or {}).items()}
        requested = _ms()
        if max_queue_length > 0 and pool in self._queues and len(self._queues[pool]) >= max_queue_length:
            return RetryLater(self._full(pool, slots, max_queue_length))
        lease_id = new_id(8)
        loop = asyncio.get_running_loop()
        if not self.draining and self.table.enqueue(pool, slots, self._pid, lease_id):
            return self._issue(lease_id, pool, slots, meta, requested)
        waiter = _Waiter(lease_id, pool, slots, meta, loop.create_future(), requested)
        self._queues[pool].append(waiter)
        try:
            if queue_timeout_ms > 0:
                return await asyncio.wait_for(asyncio.shield(waiter.future), queue_timeout_ms / 1000.0)
            return await asyncio.shield(waiter.future)
        except TimeoutError:
            self._withdraw(waiter)
            return RetryLater(
                {
                    "reason": "executor_pool_queue_timeout",
                    "pool": pool,
                    "slots": slots,
                    "queue_wait_ms": int(_ms() - requested),
                    "timeout_ms": queue_timeout_ms,
                    "retry_after_ms": RETRY_AFTER_MS,
                }
            )
        except asyncio.CancelledError:
            self._withdraw(waiter)
            raise

    def _full(self, pool: str, slots: int, max_queue_length: int) -> dict[str, Any]:
        return {
            "reason": "executor_pool_queue_full",
            "pool": pool,
            "slots": slots,
            "queued": len(self._queues[pool]),
            "max_queue_length": max_queue_length,
            "retry_after_ms": RETRY_AFTER_MS,
        }

    def _withdraw(self, waiter: _Waiter) -> None:
        """The caller gave up: leave the queue, or hand back a grant that raced the timeout."""
        try:
            self._queues[waiter.pool].remove(waiter)
        except ValueError:
            pass
        if waiter.future.done() and not waiter.future.cancelled():
            self.release(waiter.future.result().lease_id)
            return
        waiter.future.cancel()
        if not self.table.cancel(waiter.lease_id):
            self.table.release(waiter.lease_id)  # granted in the table meanwhile
        self._wake()  # the head may have been the blocker

    def _issue(self, lease_id: str, pool: str, slots: int, meta: dict[str, Any], requested: float) -> Lease:
        now = _ms()
        lease = Lease(lease_id, pool, slots, int(now - requested), requested, now, meta)
        self._leases[lease_id] = lease
        return lease

    def _wake(self) -> None:
        """Resolve the queue heads the table has granted (strict FIFO: stop at the first still queued)."""
        if self.draining:
            return
        for queue in self._queues.values():
            while queue:
                head = queue[0]
                if head.future.done():
                    queue.popleft()
                    continue
                if self.table.poll(head.lease_id) != "granted":
                    break
                queue.popleft()
                head.future.set_result(
                    self._issue(head.lease_id, head.pool, head.slots, head.metadata, head.requested_at)
                )

    def release(self, lease_id: str) -> bool:
        if self._leases.pop(lease_id, None) is None:
            return False
        self.table.release(lease_id)
        self._wake()
        return True

    def release_where(self, **match: Any) -> list[Lease]:
        """Release every lease whose metadata matches (e.g. ``job_id=...``); returns them."""
        found = [lease for lease in self._leases.values() if all(lease.metadata.get(k) == v for k, v in match.items())]
        for lease in found:
            self.release(lease.lease_id)
        return found

    # -- read model ------------------------------------------------------------------------
    def stats(self) -> dict[str, dict[str, int]]:
        return self.table.stats()

    def leases(self) -> list[Lease]:
        return list(self._leases.values())
