"""Write-behind persistence: batch events, agent snapshots and job records into store pipelines.

Sources (job coordinators) call :meth:`WriteBehind.touch` when they have something new; the
persister collects from every touched source at most every ``interval`` and writes one atomic
:class:`~mncore.store.base.Batch`. Documents are built at collection time, synchronously, so each
batch is a consistent cut of the runtime's state. :meth:`flush` is the durability point: when it
returns, everything touched before the call is in the store.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Protocol

from .store.base import Batch, Store

logger = logging.getLogger(__name__)

__all__ = ["BatchSource", "WriteBehind"]


class BatchSource(Protocol):
    def collect(self, batch: Batch) -> None:
        """Move everything new into ``batch`` (and forget it locally)."""


class WriteBehind:
    """Coalesces writes; one batch in flight at a time; failed batches are retried, merged."""

    def __init__(self, store: Store, interval_ms: float = 5.0) -> None:
        self.store = store
        self.interval = max(interval_ms, 0.0) / 1000.0
        self._touched: dict[int, BatchSource] = {}
        self._lock = asyncio.Lock()
        self._timer: asyncio.TimerHandle | None = None
        self._carry: Batch | None = None  # a batch whose write failed, retried with the next one
        self._background: set[asyncio.Task[None]] = set()
        self.batches_written = 0
        self.last_error: BaseException | None = None
        # Adaptive cadence: a flush that cost c seconds waits at least 4c before the next one, so
        # snapshotting deep mailboxes can never take more than ~20% of the loop.
        self._delay = self.interval

    def touch(self, source: BatchSource) -> None:
        self._touched[id(source)] = source
        if self._timer is None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self._delay, self._on_timer)

    def flush_soon(self) -> None:
        """Flush at the next loop iteration (``checkpoint`` actions)."""
        loop = asyncio.get_running_loop()
        if self._timer is not None:
            self._timer.cancel()
        self._timer = loop.call_later(0, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        task = asyncio.ensure_future(self._flush_background())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _flush_background(self) -> None:
        started = time.perf_counter()
        try:
            await self.flush()
            self._delay = max(self.interval, min(4 * (time.perf_counter() - started), 0.5))
        except Exception as exc:  # retried with the next batch; durability points re-raise
            self.last_error = exc
            logger.warning("store write failed, will retry: %s", exc)
            if self._timer is None:
                loop = asyncio.get_running_loop()
                self._timer = loop.call_later(max(self.interval, 0.25), self._on_timer)

    def _collect(self) -> Batch:
        batch = self._carry or Batch()
        self._carry = None
        touched, self._touched = self._touched, {}
        for source in touched.values():
            source.collect(batch)
        return batch

    async def flush(self) -> None:
        """Write everything touched so far; returns once it is durable in the store."""
        async with self._lock:
            batch = self._collect()
            if batch.is_empty():
                return
            try:
                await self.store.write_batch(batch)
            except BaseException:
                self._carry = batch
                raise
            self.batches_written += 1
            self.last_error = None

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        await self.flush()
        for task in list(self._background):
            await task
