"""In-process event fan-out: one bounded queue per subscriber, fed by ``Store.write_batch``.

Items are ``(seq, event)``: ``seq`` is the event's 0-based position in its job's event list.
Events that another process appended (seen only by the Redis backend, on the job's pub/sub
channel) arrive as ``(None, event)``: their position is not known on this side, so a consumer
that needs exact order treats such an item as a doorbell and re-reads by range
(``Store.read_events(job_id, next_seq)``).

Back-pressure: a subscriber holds at most ``limit`` undelivered items. A subscriber that falls
further behind is *dropped* rather than buffered without bound: it stops receiving, yields what it
already holds, then raises :class:`~mncore.errors.RetryLaterError`; the consumer re-reads the
events it missed by range and subscribes again. Writers never wait for readers.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from ..errors import RetryLaterError

__all__ = ["Hub", "Item", "Subscription"]

Item = tuple[int | None, dict[str, Any]]

_OPEN, _CLOSED, _OVERFLOWED = "open", "closed", "overflowed"


class Subscription:
    """Async iterator of ``(seq, event)`` for one job's events written after it was created.

    Usage::

        sub = await store.subscribe(job_id)
        async with sub:
            async for seq, event in sub:
                ...

    Iteration ends (``StopAsyncIteration``) once the subscription or its store is closed, after
    the items already queued have been yielded.
    """

    def __init__(self, job_id: str, limit: int, closer: Callable[[Subscription], Awaitable[None]]) -> None:
        self.job_id = job_id
        self._limit = limit
        self._closer = closer
        self._items: deque[Item] = deque()
        self._state = _OPEN
        self._waiter: asyncio.Future[None] | None = None
        self._delivered = 0

    @property
    def overflowed(self) -> bool:
        """True once this subscriber fell more than ``limit`` items behind and was dropped."""
        return self._state == _OVERFLOWED

    @property
    def closed(self) -> bool:
        return self._state != _OPEN

    def push(self, item: Item) -> bool:
        """Queue one item; ``False`` (and the subscription is dropped) when it is already full."""
        if self._state != _OPEN:
            return False
        if len(self._items) >= self._limit:
            self._state = _OVERFLOWED
            self._wake()
            return False
        self._items.append(item)
        self._wake()
        return True

    def end(self) -> None:
        """Stop delivery; iteration ends after the queued items (no I/O: the store is closing)."""
        if self._state == _OPEN:
            self._state = _CLOSED
        self._wake()

    async def close(self) -> None:
        """Unsubscribe; idempotent."""
        self.end()
        closer, self._closer = self._closer, _noop
        await closer(self)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Item:
        while True:
            if self._items:
                self._delivered += 1
                return self._items.popleft()
            if self._state == _CLOSED:
                raise StopAsyncIteration
            if self._state == _OVERFLOWED:
                raise RetryLaterError(
                    f"event subscription for job {self.job_id} fell more than {self._limit} events behind "
                    f"after {self._delivered} delivered events; re-read the missed events with "
                    "read_events() and subscribe again"
                )
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


async def _noop(_: Subscription) -> None:
    return None


class Hub:
    """Job id → live subscriptions, plus a per-job delivery cursor.

    The cursor is the next sequence number this process has delivered for the job: re-writing a
    batch (a retry after a lost reply, an idempotent replay) delivers none of its events twice.
    """

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"subscription limit must be >= 1 (got {limit})")
        self.limit = limit
        self._subs: dict[str, set[Subscription]] = {}
        self._cursor: dict[str, int] = {}

    def add(self, sub: Subscription) -> None:
        self._subs.setdefault(sub.job_id, set()).add(sub)

    def remove(self, sub: Subscription) -> None:
        subs = self._subs.get(sub.job_id)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subs[sub.job_id]

    def publish(self, job_id: str, first_seq: int, events: list[dict[str, Any]]) -> None:
        """Deliver the events of one committed write that this process has not delivered before."""
        end = first_seq + len(events)
        done = self._cursor.get(job_id, 0)
        if end <= done:
            return
        self._cursor[job_id] = end
        subs = self._subs.get(job_id)
        if not subs:
            return
        start = max(first_seq, done)
        for sub in list(subs):
            for seq in range(start, end):
                if not sub.push((seq, events[seq - first_seq])):
                    self.remove(sub)
                    break

    def deliver(self, job_id: str, item: Item) -> None:
        """Deliver one item that did not come from this process's writes."""
        for sub in list(self._subs.get(job_id, ())):
            if not sub.push(item):
                self.remove(sub)

    def forget(self, job_id: str) -> None:
        """Drop the cursor of a deleted job (a job re-created under the same id starts at 0)."""
        self._cursor.pop(job_id, None)

    def end_all(self) -> None:
        for subs in list(self._subs.values()):
            for sub in list(subs):
                sub.end()
        self._subs.clear()
