"""The Store contract: public methods written once here, on small primitives each backend overrides.

A store holds, per job: the job record, the append-only event list and the agent snapshots; and,
store-wide: leases (job ownership, cluster leader), documents (resource limits, node state) and
the node set. Backends: :class:`~mncore.store.memory.MemoryStore` (no persistence),
:class:`~mncore.store.sqlite.SQLiteStore` (embedded default) and
:class:`~mncore.store.redis.RedisStore` (clusters; the exact key layout of the spec).

Writes go through :meth:`Store.write_batch`, which applies a :class:`Batch` atomically. Events
carry explicit 0-based sequence numbers within their job, which makes appends idempotent: a
batch written twice (a retry after a lost reply) stores each event once. An append that would
leave a gap (first sequence number past the stored end) writes nothing and raises
:class:`~mncore.errors.StateError`. After a successful write every newly appended event is
delivered to this process's subscribers (see :mod:`mncore.store._pubsub`).
"""

from __future__ import annotations

import abc
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..errors import EventGapError
from ._keys import check_doc_key
from ._pubsub import Hub, Subscription

__all__ = ["Batch", "Store", "gap_error", "wall_ms"]

Doc = dict[str, Any]


def wall_ms() -> int:
    """Wall-clock milliseconds: lease and document expiry must agree across processes."""
    return int(time.time() * 1000)


def gap_error(job_id: str, first_seq: int, stored: int) -> EventGapError:
    return EventGapError(job_id, first_seq, stored)


@dataclass
class Batch:
    """Writes to apply together: job records, event appends and agent snapshots, by job id.

    ``events[job_id]`` is ``(seq of the first event, events in order)``; the ``add_*`` helpers
    accumulate writes (latest record or snapshot wins, event runs are joined).
    """

    jobs: dict[str, Doc] = field(default_factory=dict)
    events: dict[str, tuple[int, list[Doc]]] = field(default_factory=dict)
    agents: dict[str, dict[str, Doc]] = field(default_factory=dict)

    def is_empty(self) -> bool:
        return not (self.jobs or self.agents or any(events for _, events in self.events.values()))

    def add_job(self, record: Doc) -> None:
        self.jobs[record["job_id"]] = record

    def add_agent(self, job_id: str, snapshot: Doc) -> None:
        self.agents.setdefault(job_id, {})[snapshot["agent_id"]] = snapshot

    def add_events(self, job_id: str, first_seq: int, events: list[Doc]) -> None:
        """Join a run of events to the one held for the job; the two runs must touch or overlap."""
        if not events:
            return
        held = self.events.get(job_id)
        if held is None:
            self.events[job_id] = (first_seq, list(events))
            return
        start, have = held
        new_end = first_seq + len(events)
        if first_seq <= start <= new_end:
            self.events[job_id] = (first_seq, list(events) + have[new_end - start :])
        elif start < first_seq <= start + len(have):
            have.extend(events[start + len(have) - first_seq :])
        else:
            raise ValueError(
                f"events of job {job_id}: run {first_seq}..{new_end - 1} does not touch the batched run "
                f"{start}..{start + len(have) - 1}; flush the batch first"
            )

    def merge(self, other: Batch) -> None:
        """Fold ``other`` (the later writes) into this batch."""
        self.jobs.update(other.jobs)
        for job_id, (first_seq, events) in other.events.items():
            self.add_events(job_id, first_seq, events)
        for job_id, snapshots in other.agents.items():
            self.agents.setdefault(job_id, {}).update(snapshots)


def _check_ttl(ttl_ms: int) -> None:
    if not isinstance(ttl_ms, int) or isinstance(ttl_ms, bool) or ttl_ms < 1:
        raise ValueError(f"ttl_ms must be a positive integer of milliseconds (got {ttl_ms!r})")


class Store(abc.ABC):
    """Async persistence for jobs, events, agent snapshots, leases, documents and event pub/sub."""

    url: str

    def __init__(self, url: str, *, subscription_limit: int = 10_000) -> None:
        self.url = url
        self._hub = Hub(subscription_limit)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url}>"

    # ---- lifecycle ----------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect / create the schema; raises :class:`~mncore.errors.StoreUnavailable` if unreachable."""
        await self._open()

    async def close(self) -> None:
        """End every subscription, then release connections and threads."""
        self._hub.end_all()
        await self._close()

    async def __aenter__(self) -> Store:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # ---- writes ---------------------------------------------------------------------------------

    async def write_batch(self, batch: Batch) -> None:
        """Apply every write of ``batch`` atomically, then deliver the new events to subscribers."""
        if batch.is_empty():
            return
        for job_id, (first_seq, _) in batch.events.items():
            if not isinstance(first_seq, int) or first_seq < 0:
                raise ValueError(f"events of job {job_id}: first seq must be an integer >= 0 (got {first_seq!r})")
        await self._write_batch(batch)
        for job_id, (first_seq, events) in batch.events.items():
            if events:
                self._hub.publish(job_id, first_seq, events)

    async def put_job(self, record: Doc) -> None:
        await self.write_batch(Batch(jobs={record["job_id"]: record}))

    async def append_events(self, job_id: str, first_seq: int, events: list[Doc]) -> None:
        await self.write_batch(Batch(events={job_id: (first_seq, list(events))}))

    async def put_agents(self, job_id: str, snapshots: Iterable[Doc]) -> None:
        await self.write_batch(Batch(agents={job_id: {s["agent_id"]: s for s in snapshots}}))

    async def delete_job(self, job_id: str) -> None:
        """Remove the job record, its set membership, its events, its agent set and every snapshot."""
        await self._delete_job(job_id)
        self._hub.forget(job_id)

    # ---- reads ----------------------------------------------------------------------------------

    async def get_job(self, job_id: str) -> Doc | None:
        return (await self._get_jobs([job_id]))[0]

    async def get_jobs(self, job_ids: Iterable[str]) -> list[Doc]:
        """The records of ``job_ids`` that exist, in the order asked."""
        ids = list(job_ids)
        if not ids:
            return []
        return [record for record in await self._get_jobs(ids) if record is not None]

    async def job_ids(self) -> list[str]:
        return sorted(await self._job_ids())

    async def read_events(self, job_id: str, start: int = 0, stop: int | None = None) -> list[Doc]:
        """``events[start:stop]`` of the job, with Python slice semantics (``start=-25``: the last 25)."""
        if not isinstance(start, int) or (stop is not None and not isinstance(stop, int)):
            raise ValueError(f"read_events: start and stop must be integers (got {start!r}, {stop!r})")
        if stop is not None and start >= 0 and 0 <= stop <= start:
            return []
        return await self._read_events(job_id, start, stop)

    async def count_events(self, job_id: str) -> int:
        return await self._count_events(job_id)

    async def get_agents(self, job_id: str) -> list[Doc]:
        """Every agent snapshot of the job, sorted by ``agent_id``."""
        return sorted(await self._get_agents(job_id), key=lambda snapshot: str(snapshot.get("agent_id")))

    async def get_agent(self, job_id: str, agent_id: str) -> Doc | None:
        return await self._get_agent(job_id, agent_id)

    # ---- leases ---------------------------------------------------------------------------------

    async def acquire_lease(self, name: str, owner: str, ttl_ms: int) -> bool:
        """Take the lease if nobody holds it (an expired lease is free); true when taken."""
        _check_ttl(ttl_ms)
        return await self._acquire_lease(name, owner, ttl_ms)

    async def renew_lease(self, name: str, owner: str, ttl_ms: int) -> bool:
        """Extend the lease to ``ttl_ms`` from now if ``owner`` still holds it."""
        _check_ttl(ttl_ms)
        return await self._renew_lease(name, owner, ttl_ms)

    async def release_lease(self, name: str, owner: str) -> bool:
        """Drop the lease if ``owner`` holds it; true when dropped."""
        return await self._release_lease(name, owner)

    async def lease_owner(self, name: str) -> str | None:
        return await self._lease_owner(name)

    # ---- documents and nodes --------------------------------------------------------------------

    async def put_doc(self, key: str, doc: Doc, ttl_ms: int | None = None) -> None:
        """Store a JSON document under ``key`` (e.g. ``resource:limits``), optionally expiring."""
        if ttl_ms is not None:
            _check_ttl(ttl_ms)
        await self._put_doc(check_doc_key(key), doc, ttl_ms)

    async def get_doc(self, key: str) -> Doc | None:
        return await self._get_doc(check_doc_key(key))

    async def delete_doc(self, key: str) -> None:
        await self._delete_doc(check_doc_key(key))

    async def add_node(self, name: str) -> None:
        await self._add_node(name)

    async def node_names(self) -> list[str]:
        return sorted(await self._node_names())

    # ---- pub/sub --------------------------------------------------------------------------------

    async def subscribe(self, job_id: str) -> Subscription:
        """Events of ``job_id`` written after this call returns, as ``(seq, event)``; see ``_pubsub``."""
        sub = Subscription(job_id, self._hub.limit, self._unsubscribe)
        self._hub.add(sub)
        try:
            await self._watch(job_id)
        except BaseException:
            self._hub.remove(sub)
            raise
        return sub

    async def _unsubscribe(self, sub: Subscription) -> None:
        self._hub.remove(sub)
        await self._unwatch(sub.job_id)

    async def _watch(self, job_id: str) -> None:
        """Start receiving other processes' events of the job (backends shared across processes)."""
        return None

    async def _unwatch(self, job_id: str) -> None:
        """Undo one :meth:`_watch`."""
        return None

    # ---- primitives -----------------------------------------------------------------------------

    @abc.abstractmethod
    async def _open(self) -> None: ...

    @abc.abstractmethod
    async def _close(self) -> None: ...

    @abc.abstractmethod
    async def _write_batch(self, batch: Batch) -> None:
        """All or nothing; events below the stored end are skipped; a gap raises :func:`gap_error`."""

    @abc.abstractmethod
    async def _get_jobs(self, job_ids: list[str]) -> list[Doc | None]:
        """One entry per id, ``None`` where missing."""

    @abc.abstractmethod
    async def _job_ids(self) -> list[str]: ...

    @abc.abstractmethod
    async def _read_events(self, job_id: str, start: int, stop: int | None) -> list[Doc]: ...

    @abc.abstractmethod
    async def _count_events(self, job_id: str) -> int: ...

    @abc.abstractmethod
    async def _get_agents(self, job_id: str) -> list[Doc]: ...

    @abc.abstractmethod
    async def _get_agent(self, job_id: str, agent_id: str) -> Doc | None: ...

    @abc.abstractmethod
    async def _delete_job(self, job_id: str) -> None: ...

    @abc.abstractmethod
    async def _acquire_lease(self, name: str, owner: str, ttl_ms: int) -> bool: ...

    @abc.abstractmethod
    async def _renew_lease(self, name: str, owner: str, ttl_ms: int) -> bool: ...

    @abc.abstractmethod
    async def _release_lease(self, name: str, owner: str) -> bool: ...

    @abc.abstractmethod
    async def _lease_owner(self, name: str) -> str | None: ...

    @abc.abstractmethod
    async def _put_doc(self, key: str, doc: Doc, ttl_ms: int | None) -> None: ...

    @abc.abstractmethod
    async def _get_doc(self, key: str) -> Doc | None: ...

    @abc.abstractmethod
    async def _delete_doc(self, key: str) -> None: ...

    @abc.abstractmethod
    async def _add_node(self, name: str) -> None: ...

    @abc.abstractmethod
    async def _node_names(self) -> list[str]: ...
