"""Events that other processes append, received on ``<ns>:channel:events:<job_id>`` (Redis backend).

One pub/sub connection per :class:`~mncore.store.redis.RedisStore`, shared by all its
subscriptions and open only while one exists; a job's channel is subscribed while at least one
local subscription watches it.
Messages are the stored event JSON, without a sequence number, so they reach subscribers as
``(None, event)``: a doorbell telling the consumer to re-read by range for the exact order.

Echo suppression: this process's own appends are delivered locally with their sequence numbers
(:mod:`mncore.store._pubsub`) and come back on the channel too. Before a write, the encoded events
of watched jobs are counted as *expected*; the write script reports how many it appended (and
published), and the expectations for the rest are withdrawn. A channel message matching an
expectation is the echo and is dropped. Expectations of a write that failed without an answer
stay (its events may have been published); they are dropped with the job's last subscription.

After a lost pub/sub connection the listener reconnects with backoff and resubscribes; remote
events published meanwhile are not delivered (consumers catch up by range at the next doorbell).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .._util import loads
from ..errors import StoreUnavailable
from ._keys import Keys
from ._pubsub import Hub

__all__ = ["RemoteEvents"]

logger = logging.getLogger(__name__)

Retry = Callable[[str, Callable[[], Awaitable[Any]]], Awaitable[Any]]

_CONFIRM_TIMEOUT_S = 5.0


class RemoteEvents:
    """Feeds the hub with events published on the job channels by other processes.

    The pub/sub connection and its listener task exist while at least one job is watched.
    """

    def __init__(self, client: Redis, keys: Keys, hub: Hub, retry: Retry, backoff: tuple[float, float]) -> None:
        self._client = client
        self._keys = keys
        self._hub = hub
        self._retry = retry
        self._backoff = backoff
        self._pubsub: PubSub | None = None
        self._task: asyncio.Task[None] | None = None
        self._refs: dict[str, int] = {}
        self._ready: dict[str, asyncio.Future[None]] = {}
        self._expected: dict[str, Counter[bytes]] = {}

    # ---- subscriptions ------------------------------------------------------------------------

    async def watch(self, job_id: str) -> None:
        """Subscribe to the job's channel (once per job); returns when Redis confirmed it."""
        self._refs[job_id] = self._refs.get(job_id, 0) + 1
        try:
            ready = self._ready.get(job_id)
            if ready is None:
                ready = self._ready[job_id] = asyncio.get_running_loop().create_future()
                self._expected[job_id] = Counter()
                if self._pubsub is None:
                    self._pubsub = self._client.pubsub()
                pubsub, channel = self._pubsub, self._keys.channel(job_id)
                await self._retry("SUBSCRIBE", lambda: pubsub.subscribe(channel))
                if self._task is None:
                    self._task = asyncio.create_task(self._listen(pubsub), name="mn-store-redis-events")
            await asyncio.wait_for(asyncio.shield(ready), _CONFIRM_TIMEOUT_S)
        except BaseException as exc:
            await self.unwatch(job_id)
            if isinstance(exc, TimeoutError):
                raise StoreUnavailable(f"Redis did not confirm the subscription to the events of job {job_id}") from exc
            raise

    async def unwatch(self, job_id: str) -> None:
        refs = self._refs.get(job_id, 0) - 1
        if refs > 0:
            self._refs[job_id] = refs
            return
        self._refs.pop(job_id, None)
        self._ready.pop(job_id, None)
        self._expected.pop(job_id, None)
        if not self._refs:
            await self._stop()
        elif self._pubsub is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._pubsub.unsubscribe(self._keys.channel(job_id))

    async def close(self) -> None:
        for ready in self._ready.values():
            ready.cancel()
        self._refs.clear()
        self._ready.clear()
        self._expected.clear()
        await self._stop()

    async def _stop(self) -> None:
        # Detach first: a watch() that starts meanwhile builds a fresh connection.
        task, pubsub = self._task, self._pubsub
        self._task = self._pubsub = None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if pubsub is not None:
            await pubsub.aclose()

    # ---- echo suppression ---------------------------------------------------------------------------

    def expect(self, job_id: str, bodies: list[bytes]) -> None:
        """Count the encoded events of a write about to be sent (only for watched jobs)."""
        expected = self._expected.get(job_id)
        if expected is not None:
            expected.update(bodies)

    def settle(self, job_id: str, bodies: list[bytes], appended: int) -> None:
        """Withdraw the expectations of events the write did not append (so did not publish)."""
        expected = self._expected.get(job_id)
        if expected is not None:
            expected.subtract(bodies[: len(bodies) - appended])
            expected += Counter()  # drop zero and negative counts

    # ---- the listener -----------------------------------------------------------------------------

    async def _listen(self, pubsub: PubSub) -> None:
        delay = self._backoff[0]
        while True:
            try:
                message = await pubsub.get_message(timeout=None)
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                logger.warning("Redis event channel lost (%s); reconnecting in %.2f s", exc, delay)
                if pubsub.connection is not None:
                    await pubsub.connection.disconnect()
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._backoff[1])
                continue
            delay = self._backoff[0]
            if message is not None:
                try:
                    self._handle(message)
                except Exception:  # one bad message must not end delivery for every subscriber
                    logger.exception("cannot handle a message on a Redis event channel")

    def _handle(self, message: dict[str, Any]) -> None:
        channel = message["channel"]
        job_id = self._keys.channel_job_id(channel.decode() if isinstance(channel, bytes) else str(channel))
        if job_id is None:
            return
        if message["type"] == "subscribe":
            ready = self._ready.get(job_id)
            if ready is not None and not ready.done():
                ready.set_result(None)
            return
        if message["type"] != "message":
            return
        data: bytes = message["data"]
        expected = self._expected.get(job_id)
        count = 0 if expected is None else expected[data]
        if expected is not None and count > 0:
            if count == 1:
                del expected[data]
            else:
                expected[data] = count - 1
            return
        try:
            event = loads(data)
        except ValueError:
            logger.warning("ignoring a non-JSON message on the event channel of job %s", job_id)
            return
        self._hub.deliver(job_id, (None, event))
