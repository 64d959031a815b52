"""Follow a job's events: replay from the store, then live ones, without gaps or duplicates.

:func:`follow_events` is what the REST SSE stream and the gRPC ``StreamEvents`` both read. It
subscribes *before* reading the stored events, so nothing written in between is missed; every
item carries the event's 0-based index in the job's event list, and an index already yielded
is never yielded again. Live items whose position is unknown (another process appended them)
or that skip ahead are treated as a doorbell: the missing range is re-read from the store.
A subscription that fell too far behind (:class:`~mncore.errors.RetryLaterError`) is replaced
by a fresh one after re-reading what it missed.

After ``heartbeat_s`` seconds without an event the follower yields a heartbeat item
``(None, {"type": "stream_heartbeat", "job_id", "timestamp"})``. It ends after a terminal event
(``job_completed``, ``job_failed``, ``job_cancelled``), when the store closes, or right after the
replay when ``follow`` is false.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING, Any

from ._util import now_iso
from .errors import RetryLaterError

if TYPE_CHECKING:
    from .runtime import Runtime
    from .store import Subscription

__all__ = ["HEARTBEAT", "TERMINAL_EVENTS", "LiveItem", "follow_events", "is_heartbeat"]

HEARTBEAT = "stream_heartbeat"
TERMINAL_EVENTS = frozenset(("job_completed", "job_failed", "job_cancelled"))
TERMINAL_STATUSES = frozenset(("completed", "failed", "cancelled"))

#: ``(index, event)``; ``index`` is ``None`` for a heartbeat
LiveItem = tuple[int | None, dict[str, Any]]


def is_heartbeat(item: LiveItem) -> bool:
    return item[0] is None


def heartbeat(job_id: str) -> LiveItem:
    return None, {"type": HEARTBEAT, "job_id": job_id, "timestamp": now_iso()}


class _Follower:
    """State of one follow: the next index to yield and the current subscription."""

    def __init__(self, runtime: Runtime, job_id: str, next_index: int) -> None:
        self.runtime = runtime
        self.store = runtime.store
        self.job_id = job_id
        self.next = next_index
        self.sub: Subscription | None = None
        self.finished = False

    async def subscribe(self) -> None:
        if self.sub is not None:
            await self.sub.close()
        self.sub = await self.store.subscribe(self.job_id)

    async def close(self) -> None:
        if self.sub is not None:
            await self.sub.close()
            self.sub = None

    def take(self, index: int, event: dict[str, Any]) -> LiveItem:
        self.next = index + 1
        if event.get("type") in TERMINAL_EVENTS:
            self.finished = True
        return index, event

    async def catch_up(self, upto: int | None = None) -> list[LiveItem]:
        """Stored events from ``next`` (up to ``upto``, exclusive), stopping after a terminal one."""
        await self.runtime.persister_flush()
        events = await self.store.read_events(self.job_id, self.next, upto)
        out = []
        for event in events:
            out.append(self.take(self.next, event))
            if self.finished:
                break
        return out

    async def receive(self, timeout: float | None) -> list[LiveItem] | None:
        """The next new items in order; ``[]`` after ``timeout`` s of silence; ``None`` once the store closed."""
        assert self.sub is not None
        while True:
            try:
                seq, event = await asyncio.wait_for(self.sub.__anext__(), timeout)
            except TimeoutError:
                return []
            except StopAsyncIteration:
                return None
            except RetryLaterError:
                await self.subscribe()
                seq, event = None, {}
            if seq is not None and seq < self.next:
                continue  # already yielded (replayed from the store)
            if seq == self.next:
                return [self.take(seq, event)]
            items = await self.catch_up(None if seq is None else seq + 1)
            if items:
                return items


async def follow_events(
    runtime: Runtime,
    job_id: str,
    after: int = -1,
    replay: bool = True,
    follow: bool = True,
    heartbeat_s: float | None = 5.0,
    limit: int = 0,
) -> AsyncGenerator[LiveItem, None]:
    """Yield ``(index, event)`` of ``job_id`` after index ``after``; see the module docstring.

    ``replay=False`` skips the stored events (only live ones); ``limit`` > 0 replays only the last
    ``limit`` stored events; ``heartbeat_s`` None or <= 0 disables heartbeats. Raises
    :class:`~mncore.errors.JobNotFound` (before yielding anything) for an unknown job.
    """
    record = await runtime.inspect_job(job_id)
    follower = _Follower(runtime, job_id, max(after + 1, 0))
    try:
        if follow:
            await follower.subscribe()
        await _position(follower, replay, limit)
        for item in await follower.catch_up() if replay else []:
            yield item
        if not follow or follower.finished or (not replay and await _terminal(runtime, job_id, record)):
            return
        wait = heartbeat_s if heartbeat_s and heartbeat_s > 0 else None
        while not follower.finished:
            items = await follower.receive(wait)
            if items is None:
                return
            if not items:
                yield heartbeat(job_id)
            for item in items:
                yield item
    finally:
        await follower.close()


async def _position(follower: _Follower, replay: bool, limit: int) -> None:
    """Move the start past stored events that are not replayed (``replay=False`` or ``limit``)."""
    if replay and limit <= 0:
        return
    await follower.runtime.persister_flush()
    count = await follower.store.count_events(follower.job_id)
    follower.next = max(follower.next, count if not replay else count - limit)


async def _terminal(runtime: Runtime, job_id: str, record: dict[str, Any]) -> bool:
    if record.get("status") in TERMINAL_STATUSES:
        return True
    current = await runtime.store.get_job(job_id)
    return current is None or current.get("status") in TERMINAL_STATUSES
