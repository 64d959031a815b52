"""Node restart: take over the unfinished jobs of this node from the store (runtime-lifecycle.md §7).

Only ``mn server`` calls this at start (an embedded ``mn run`` runs only its own job). A job is
taken when its lease ``job:<id>`` is free or held under this node's name; its bundle is reloaded
from ``manifest_ref.job_path`` and its agents restart from their snapshots.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

from . import monitor
from .bundle import Bundle, load_bundle
from .coordinator import LEASE_TTL_MS, JobCoordinator

if TYPE_CHECKING:
    from .runtime import Runtime

logger = logging.getLogger(__name__)

__all__ = ["recover_jobs"]


async def recover_jobs(rt: Runtime) -> list[str]:
    """The ids of the jobs taken over."""
    taken = []
    me = rt.settings.node_name
    store = rt.store
    for record in await store.get_jobs(await store.job_ids()):
        job_id = record["job_id"]
        if record.get("status") not in monitor.ACTIVE or job_id in rt.coordinators:
            continue
        owner = await store.lease_owner(f"job:{job_id}")
        if owner not in (None, me):
            continue
        if owner == me:  # our own lease from before a restart: the old process is gone
            await store.release_lease(f"job:{job_id}", me)
        if not await store.acquire_lease(f"job:{job_id}", me, LEASE_TTL_MS):
            continue
        await _take_over(rt, record)
        taken.append(job_id)
    return taken


async def _take_over(rt: Runtime, record: dict[str, Any]) -> None:
    job_id = record["job_id"]
    path = (record.get("manifest_ref") or {}).get("job_path")
    seq = await rt.store.count_events(job_id)
    try:
        if not path or not os.path.isdir(path):
            raise FileNotFoundError(path)
        bundle = load_bundle(path)
    except Exception:
        logger.exception("bundle of job %s is gone", job_id)
        coordinator = JobCoordinator(rt, record, Bundle(None, None, None, {"nodes": [], "edges": []}), event_seq=seq)
        text = f"bundle for job {job_id} is no longer available: {path}"
        coordinator.fail({"error": text}, text, None)
        await rt.persister_flush()
        await rt.store.release_lease(f"job:{job_id}", rt.settings.node_name)
        return
    coordinator = JobCoordinator(rt, record, bundle, event_seq=seq)
    rt.coordinators[job_id] = coordinator
    if record.get("status") == "pending":
        await coordinator.start()
    else:
        await coordinator.take_over(await rt.store.get_agents(job_id))
