"""MemoryStore: the Store contract on plain dicts in this process ("persistence off").

Documents go through a JSON round trip on write, exactly like the real backends, so a write
captures the caller's dicts as they were (callers keep mutating agent state) and pre-encoded
fragments become plain values. Every primitive runs without awaiting, so each one is atomic with
respect to the loop.
"""

from __future__ import annotations

from typing import Any

from .._util import dumps, loads
from .base import Batch, Doc, Store, gap_error, wall_ms


def _plain(value: Any) -> Any:
    return loads(dumps(value))


__all__ = ["MemoryStore"]


class MemoryStore(Store):
    """Everything in dicts; lost when the process exits."""

    def __init__(self, *, subscription_limit: int = 10_000) -> None:
        super().__init__("memory://", subscription_limit=subscription_limit)
        self._jobs: dict[str, Doc] = {}
        self._events: dict[str, list[Doc]] = {}
        self._agents: dict[str, dict[str, Doc]] = {}
        self._leases: dict[str, tuple[str, int]] = {}
        self._docs: dict[str, tuple[Doc, int | None]] = {}
        self._nodes: set[str] = set()

    async def _open(self) -> None:
        return None

    async def _close(self) -> None:
        return None

    async def _write_batch(self, batch: Batch) -> None:
        appends: list[tuple[list[Doc], list[Doc]]] = []
        for job_id, (first_seq, events) in batch.events.items():
            stored = self._events.setdefault(job_id, [])
            if first_seq > len(stored):
                raise gap_error(job_id, first_seq, len(stored))
            appends.append((stored, _plain(events[len(stored) - first_seq :])))
        self._jobs.update(_plain(batch.jobs))
        for stored, new in appends:
            stored.extend(new)
        for job_id, snapshots in batch.agents.items():
            self._agents.setdefault(job_id, {}).update(_plain(snapshots))

    async def _get_jobs(self, job_ids: list[str]) -> list[Doc | None]:
        return [self._jobs.get(job_id) for job_id in job_ids]

    async def _job_ids(self) -> list[str]:
        return list(self._jobs)

    async def _read_events(self, job_id: str, start: int, stop: int | None) -> list[Doc]:
        return self._events.get(job_id, [])[start:stop]

    async def _count_events(self, job_id: str) -> int:
        return len(self._events.get(job_id, ()))

    async def _get_agents(self, job_id: str) -> list[Doc]:
        return list(self._agents.get(job_id, {}).values())

    async def _get_agent(self, job_id: str, agent_id: str) -> Doc | None:
        return self._agents.get(job_id, {}).get(agent_id)

    async def _delete_job(self, job_id: str) -> None:
        self._jobs.pop(job_id, None)
        self._events.pop(job_id, None)
        self._agents.pop(job_id, None)

    # ---- leases: (owner, expires_at wall ms) --------------------------------------------------------

    def _holder(self, name: str) -> str | None:
        held = self._leases.get(name)
        if held is None:
            return None
        if held[1] <= wall_ms():
            del self._leases[name]
            return None
        return held[0]

    async def _acquire_lease(self, name: str, owner: str, ttl_ms: int) -> bool:
        if self._holder(name) is not None:
            return False
        self._leases[name] = (owner, wall_ms() + ttl_ms)
        return True

    async def _renew_lease(self, name: str, owner: str, ttl_ms: int) -> bool:
        if self._holder(name) != owner:
            return False
        self._leases[name] = (owner, wall_ms() + ttl_ms)
        return True

    async def _release_lease(self, name: str, owner: str) -> bool:
        if self._holder(name) != owner:
            return False
        del self._leases[name]
        return True

    async def _lease_owner(self, name: str) -> str | None:
        return self._holder(name)

    # ---- documents and nodes ----------------------------------------------------------------------

    async def _put_doc(self, key: str, doc: Doc, ttl_ms: int | None) -> None:
        self._docs[key] = (_plain(doc), None if ttl_ms is None else wall_ms() + ttl_ms)

    async def _get_doc(self, key: str) -> Doc | None:
        held = self._docs.get(key)
        if held is None:
            return None
        doc, expires_at = held
        if expires_at is not None and expires_at <= wall_ms():
            del self._docs[key]
            return None
        return doc

    async def _delete_doc(self, key: str) -> None:
        self._docs.pop(key, None)

    async def _add_node(self, name: str) -> None:
        self._nodes.add(name)

    async def _node_names(self) -> list[str]:
        return list(self._nodes)
