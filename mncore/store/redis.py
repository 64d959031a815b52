"""RedisStore: the Store contract on Redis with the exact key layout of runtime-lifecycle.md §10.1.

Keys come from :mod:`mncore.store._keys`, scripts from :mod:`mncore.store._scripts`. A batch is
one ``write_batch`` script call: atomic on the server, all or nothing (gaps are checked before
anything is written), and idempotent for events, which is what makes retrying it safe when the
answer was lost (a restart between the write and its reply).

Resilience: every command is retried on connection errors and timeouts, reconnecting with backoff
250 ms → 500 ms → 1 s → 2 s (capped), 10 attempts in all, then raises
:class:`~mncore.errors.StoreUnavailable`. ``open()`` fails fast with ``StoreUnavailable`` (2 s
connect timeout) when Redis is unreachable at start. redis-py's own retries are switched off so
the two loops do not multiply.

Pub/sub: the script PUBLISHes each appended event on ``<ns>:channel:events:<job_id>`` (same JSON
as stored); subscribers in this process get their events from the in-process hub, and events of
other processes through :mod:`mncore.store._redis_events`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .._util import dumps, loads
from ..errors import StoreUnavailable
from . import _scripts
from ._keys import Keys
from ._redis_events import RemoteEvents
from .base import Batch, Doc, Store, gap_error

__all__ = ["RedisStore"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

_RETRYABLE = (RedisConnectionError, RedisTimeoutError, OSError)


def redact_url(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=user + netloc))


class RedisStore(Store):
    """The Store contract on one Redis server (``redis://`` or ``rediss://``).

    ``url`` is the redacted URL (no password); attempts and backoff are the spec's defaults and
    only tests change them.
    """

    def __init__(
        self,
        url: str,
        *,
        namespace: str = "mirror_neuron",
        attempts: int = 10,
        backoff: tuple[float, float] = (0.25, 2.0),
        connect_timeout_s: float = 2.0,
        command_timeout_s: float = 10.0,
        subscription_limit: int = 10_000,
    ) -> None:
        super().__init__(redact_url(url), subscription_limit=subscription_limit)
        self.keys = Keys(namespace)
        self._target = url
        self._attempts = max(1, attempts)
        self._backoff = backoff
        self._connect_timeout_s = connect_timeout_s
        self._command_timeout_s = command_timeout_s
        self._client: Redis | None = None
        self._remote: RemoteEvents | None = None
        self._scripts: dict[str, Any] = {}

    # ---- lifecycle ----------------------------------------------------------------------------------

    async def _open(self) -> None:
        if self._client is not None:
            return
        client = Redis.from_url(
            self._target,
            socket_connect_timeout=self._connect_timeout_s,
            socket_timeout=self._command_timeout_s,
            retry=Retry(NoBackoff(), 0),
        )
        try:
            await asyncio.wait_for(client.ping(), self._connect_timeout_s + 1.0)
        except (RedisError, OSError) as exc:
            await client.aclose()
            raise StoreUnavailable(
                f"cannot reach Redis at {self.url}: {exc}; start redis-server or fix MN_STORE_URL / MN_REDIS_URL"
            ) from exc
        self._client = client
        for name in _scripts.__all__:
            self._scripts[name] = client.register_script(getattr(_scripts, name))

    async def _close(self) -> None:
        if self._remote is not None:
            await self._remote.close()
            self._remote = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _retry(self, what: str, op: Callable[[], Awaitable[T]]) -> T:
        """Run ``op`` with reconnect-and-backoff on connection errors; StoreUnavailable at the end."""
        delay, cap = self._backoff
        attempt = 1
        while True:
            try:
                return await op()
            except _RETRYABLE as exc:
                if attempt >= self._attempts:
                    raise StoreUnavailable(
                        f"Redis at {self.url} is unavailable: {what} failed {attempt} times, last with: {exc}"
                    ) from exc
                logger.warning(
                    "Redis %s failed (%s); attempt %d/%d in %.2f s", what, exc, attempt + 1, self._attempts, delay
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, cap)
            attempt += 1

    def _redis(self) -> Redis:
        if self._client is None:
            raise StoreUnavailable(f"{self!r} is not open; await store.open() first")
        return self._client

    async def _cmd(self, *args: Any) -> Any:
        """One Redis command, retried."""
        client = self._redis()
        return await self._retry(str(args[0]), lambda: client.execute_command(*args))

    async def _script(self, name: str, keys: list[str], args: list[Any]) -> Any:
        self._redis()
        script = self._scripts[name]
        return await self._retry(name.lower(), lambda: script(keys=keys, args=args))

    # ---- jobs, events, agents -------------------------------------------------------------------------

    async def _write_batch(self, batch: Batch) -> None:
        k = self.keys
        job_keys, job_args = [], []
        for job_id, record in batch.jobs.items():
            job_keys.append(k.job(job_id))
            job_args += [job_id, dumps(record)]
        groups: list[tuple[str, int, list[bytes]]] = []
        event_keys, event_args = [], []
        for job_id, (first_seq, events) in batch.events.items():
            bodies = [dumps(event) for event in events]
            groups.append((job_id, first_seq, bodies))
            event_keys += [k.events(job_id), k.channel(job_id)]
            event_args += [first_seq, len(bodies), *bodies]
        agent_keys, agent_args = [], []
        for job_id, snapshots in batch.agents.items():
            for agent_id, snapshot in snapshots.items():
                agent_keys += [k.agents(job_id), k.agent(job_id, agent_id)]
                agent_args += [agent_id, dumps(snapshot)]
        keys = [k.jobs(), *job_keys, *event_keys, *agent_keys]
        args = [len(batch.jobs), len(groups), len(agent_keys) // 2, *job_args, *event_args, *agent_args]
        await self._send_batch(keys, args, groups)

    async def _send_batch(self, keys: list[str], args: list[Any], groups: list[tuple[str, int, list[bytes]]]) -> None:
        remote = self._remote
        if remote is not None:
            for job_id, _, bodies in groups:
                remote.expect(job_id, bodies)
        try:
            appended = await self._script("WRITE_BATCH", keys, args)
        except ResponseError as exc:
            if remote is not None:
                for job_id, _, bodies in groups:
                    remote.settle(job_id, bodies, 0)
            text = str(exc)
            if not text.startswith("MNGAP "):
                raise
            group, stored = (int(part) for part in text.split()[1:3])
            job_id, first_seq, _ = groups[group - 1]
            raise gap_error(job_id, first_seq, stored) from None
        if remote is not None:
            for (job_id, _, bodies), count in zip(groups, appended, strict=True):
                remote.settle(job_id, bodies, int(count))

    async def _get_jobs(self, job_ids: list[str]) -> list[Doc | None]:
        bodies = await self._cmd("MGET", *[self.keys.job(job_id) for job_id in job_ids])
        return [None if body is None else loads(body) for body in bodies]

    async def _job_ids(self) -> list[str]:
        return [member.decode() for member in await self._cmd("SMEMBERS", self.keys.jobs())]

    async def _read_events(self, job_id: str, start: int, stop: int | None) -> list[Doc]:
        # LRANGE's end is inclusive and -1 means "the last": translate Python's exclusive stop.
        if stop == 0:
            return []
        end = -1 if stop is None else stop - 1
        bodies = await self._cmd("LRANGE", self.keys.events(job_id), start, end)
        return [loads(body) for body in bodies]

    async def _count_events(self, job_id: str) -> int:
        return int(await self._cmd("LLEN", self.keys.events(job_id)))

    async def _get_agents(self, job_id: str) -> list[Doc]:
        agent_ids = await self._cmd("SMEMBERS", self.keys.agents(job_id))
        if not agent_ids:
            return []
        keys = [self.keys.agent(job_id, agent_id.decode()) for agent_id in agent_ids]
        return [loads(body) for body in await self._cmd("MGET", *keys) if body is not None]

    async def _get_agent(self, job_id: str, agent_id: str) -> Doc | None:
        body = await self._cmd("GET", self.keys.agent(job_id, agent_id))
        return None if body is None else loads(body)

    async def _delete_job(self, job_id: str) -> None:
        k = self.keys
        keys = [k.jobs(), k.job(job_id), k.events(job_id), k.agents(job_id)]
        await self._script("DELETE_JOB", keys, [job_id, k.agent_prefix(job_id)])

    # ---- leases -----------------------------------------------------------------------------------------

    async def _acquire_lease(self, name: str, owner: str, ttl_ms: int) -> bool:
        return bool(await self._cmd("SET", self.keys.lease(name), owner, "NX", "PX", ttl_ms))

    async def _renew_lease(self, name: str, owner: str, ttl_ms: int) -> bool:
        return bool(await self._script("RENEW_LEASE", [self.keys.lease(name)], [owner, ttl_ms]))

    async def _release_lease(self, name: str, owner: str) -> bool:
        return bool(await self._script("RELEASE_LEASE", [self.keys.lease(name)], [owner]))

    async def _lease_owner(self, name: str) -> str | None:
        owner = await self._cmd("GET", self.keys.lease(name))
        return None if owner is None else owner.decode()

    # ---- documents and nodes ------------------------------------------------------------------------------

    async def _put_doc(self, key: str, doc: Doc, ttl_ms: int | None) -> None:
        expiry = () if ttl_ms is None else ("PX", ttl_ms)
        await self._cmd("SET", self.keys.doc(key), dumps(doc), *expiry)

    async def _get_doc(self, key: str) -> Doc | None:
        body = await self._cmd("GET", self.keys.doc(key))
        return None if body is None else loads(body)

    async def _delete_doc(self, key: str) -> None:
        await self._cmd("DEL", self.keys.doc(key))

    async def _add_node(self, name: str) -> None:
        await self._cmd("SADD", self.keys.nodes(), name)

    async def _node_names(self) -> list[str]:
        return [name.decode() for name in await self._cmd("SMEMBERS", self.keys.nodes())]

    # ---- pub/sub across processes ---------------------------------------------------------------------------

    async def _watch(self, job_id: str) -> None:
        if self._remote is None:
            self._remote = RemoteEvents(self._redis(), self.keys, self._hub, self._retry, self._backoff)
        await self._remote.watch(job_id)

    async def _unwatch(self, job_id: str) -> None:
        if self._remote is not None:
            await self._remote.unwatch(job_id)
