"""Write-behind persistence: batch events, agent snapshots and job records into store pipelines.

Sources (job coordinators) call :meth:`WriteBehind.touch` when they have something new; the
persister collects from every touched source at most every ``interval`` and writes one atomic
:class:`~mncore.store.base.Batch`. Documents are built at collection time, synchronously, so each
batch is a consistent cut of the runtime's state. :meth:`flush` is the durability point: when it
returns, everything touched before the call is in the store.

A failed write is never dropped: its batch is carried, merged with the next one and re-sent (the
store's appends are idempotent, so a batch that landed without an answer is not stored twice),
and a retry is armed whichever caller saw the failure. :meth:`flush_durable` waits through a store
outage instead of failing, for the points that must not give up (a job's terminal transition).

A store that lost events (e.g. a Redis without persistence that restarted) answers appends with
:class:`~mncore.errors.EventGapError`. Those events cannot be rebuilt; rather than retrying a
batch that can never land (and growing it forever), the job's pending events are renumbered to
continue the stored list and the job's source is told to count on from there. Logged as an error.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Protocol

from .errors import EventGapError, StoreUnavailable
from .store.base import Batch, Store

logger = logging.getLogger(__name__)

__all__ = ["BatchSource", "WriteBehind"]


class BatchSource(Protocol):
    job_id: str

    def collect(self, batch: Batch) -> None:
        """Move everything new into ``batch`` (and forget it locally)."""

    def rebase_events(self, delta: int) -> None:
        """Shift the next event sequence number by ``delta`` (after the store lost events)."""


class WriteBehind:
    """Coalesces writes; one batch in flight at a time; failed batches are retried, merged."""

    def __init__(self, store: Store, interval_ms: float = 5.0) -> None:
        self.store = store
        self.interval = max(interval_ms, 0.0) / 1000.0
        self._touched: dict[int, BatchSource] = {}
        self._by_job: dict[str, BatchSource] = {}
        self._lock = asyncio.Lock()
        self._timer: asyncio.TimerHandle | None = None
        self._carry: Batch | None = None  # a batch whose write failed, retried with the next one
        self._background: set[asyncio.Task[None]] = set()
        self.batches_written = 0
        self.last_error: BaseException | None = None
        # Adaptive cadence: a flush that cost c seconds waits at least 4c before the next one, so
        # snapshotting deep mailboxes can never take more than ~20% of the loop.
        self._delay = self.interval
        self._closing = False

    def touch(self, source: BatchSource) -> None:
        self._touched[id(source)] = source
        self._by_job[source.job_id] = source
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
        except Exception as exc:  # carried and retried (flush armed the retry); durability points re-raise
            logger.warning("store write failed, will retry: %s", exc)

    def _retry_later(self) -> None:
        """Arm a retry of the carried batch, so it is re-sent even if nothing is touched again."""
        if self._timer is None and not self._closing:
            self._timer = asyncio.get_running_loop().call_later(max(self.interval, 0.25), self._on_timer)

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
                await self._write(batch)
            except BaseException as exc:
                self._carry = batch
                if isinstance(exc, Exception):
                    # A failure seen by a durability point must be retried too: without this, a batch
                    # carried from the last flush of a job (nothing touches it again) was never re-sent.
                    self.last_error = exc
                    self._retry_later()
                raise
            self.batches_written += 1
            self.last_error = None

    async def _write(self, batch: Batch) -> None:
        for _ in range(len(batch.events) + 1):
            try:
                await self.store.write_batch(batch)
                return
            except EventGapError as gap:
                self._rebase(batch, gap)
        await self.store.write_batch(batch)

    def _rebase(self, batch: Batch, gap: EventGapError) -> None:
        first, events = batch.events[gap.job_id]
        delta = gap.stored - first
        logger.error(
            "the store lost %d event(s) of job %s (it holds %d, the runtime had appended up to %d); "
            "continuing the event list from index %d",
            -delta, gap.job_id, gap.stored, first, gap.stored,
        )  # fmt: skip
        batch.events[gap.job_id] = (gap.stored, events)
        source = self._by_job.get(gap.job_id)
        if source is not None:
            source.rebase_events(delta)

    async def flush_durable(self, retry_s: float = 0.25, max_retry_s: float = 2.0) -> None:
        """:meth:`flush`, waiting while the store is unavailable (with backoff) instead of raising.

        Other errors (a gap: the store lost data) and a write-behind that is closing still raise.
        """
        delay = retry_s
        while True:
            try:
                await self.flush()
                return
            except StoreUnavailable as exc:
                if self._closing:
                    raise
                logger.warning("store unavailable at a durability point, waiting %.2f s: %s", delay, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_retry_s)

    async def close(self) -> None:
        self._closing = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        await self.flush()
        for task in list(self._background):
            await task
