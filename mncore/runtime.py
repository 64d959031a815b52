"""The Runtime: the seed's public API as async methods over coordinators and the store.

REST, gRPC and the CLI call only this class. One Runtime is one node: it owns the store
client, the write-behind persister, the execution service (pools, leases, runners) and the
coordinators of the jobs it runs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

from . import monitor, recovery
from ._fast import HAS_EXTENSIONS
from ._loop import HAS_UVLOOP, uvloop_loop_type
from ._util import job_id_for, now_iso
from .bundle import Bundle, load_bundle, write_bundle
from .bundles import BundleRegistry
from .config import Settings
from .coordinator import LEASE_TTL_MS, JobCoordinator
from .errors import JobNotFound, ShuttingDown, StateError, WaitTimeoutError
from .execution.backend import ExecutionService
from .live import LiveItem, follow_events
from .persistence import WriteBehind
from .resources import ResourceMonitor, validate_limits
from .store import open_store
from .store.base import Store

logger = logging.getLogger(__name__)

__all__ = ["Runtime"]

_POLL_S = 0.1


class Runtime:
    """One node's runtime. Use ``async with Runtime(settings) as rt:`` or ``start()``/``close()``."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        store: Store | None = None,
        execution: ExecutionService | None = None,
        persist: bool = True,
    ) -> None:
        self.settings = settings or Settings.from_env()
        self.store: Store = store or open_store(self.settings)
        self.execution = execution or ExecutionService(self.settings)
        self.persist = persist
        self.persister: WriteBehind | None = None
        self.resources = ResourceMonitor(self.settings.node_name, self.settings.data_dir)
        self.coordinators: dict[str, JobCoordinator] = {}
        self.accepting = True
        self._started = False
        self._drain_now: asyncio.Event | None = None
        self._bundles: BundleRegistry | None = None

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> Runtime:
        if self._started:
            return self
        Path(self.settings.data_dir).mkdir(parents=True, exist_ok=True)
        await self.store.open()
        if self.persist:
            self.persister = WriteBehind(self.store, self.settings.store_flush_interval_ms)
        limits = await self.store.get_doc("resource:limits")
        if limits:
            self.resources.limits.update({k: v for k, v in limits.items() if k in self.resources.limits})
        self.execution.leases.set_cpu_limit(self.resources.limits["cpu"])
        await self.execution.start()
        await self.store.add_node(self.settings.node_name)
        self._started = True
        logger.info(
            "runtime started: node %s, store %s, execution %s, native extensions %s, event loop %s",
            self.settings.node_name,
            self.store.url,
            self.settings.execution_mode,
            "on" if HAS_EXTENSIONS else "off (pure Python)",
            "uvloop" if HAS_UVLOOP and isinstance(asyncio.get_running_loop(), uvloop_loop_type()) else "asyncio",
        )
        return self

    async def close(self, grace: float = 0.0) -> None:
        """Stop every local job without a terminal transition (they resume on the next start).

        With ``grace`` > 0 (node shutdown), new submissions are refused and no new messages start,
        while running executor payloads get up to ``grace`` seconds to finish; the rest are killed
        and their messages stay in-flight in the agent snapshots, to be replayed after restart.
        """
        if not self._started:
            return
        self.accepting = False
        for coordinator in self.coordinators.values():
            coordinator.draining = True
        if grace > 0:
            await self._drain(grace)
        for coordinator in list(self.coordinators.values()):
            await coordinator.shutdown()
        self.coordinators.clear()
        if self.persister is not None:
            await self.persister.close()
        await self.execution.close()
        await self.store.close()
        self._started = False

    async def _drain(self, grace: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        self._drain_now = asyncio.Event()
        leases = self.execution.leases
        leases.start_draining()  # no new grants; waiting requests stay parked (their messages stay in-flight)
        while loop.time() < deadline and not self._drain_now.is_set():
            if not leases.leases():
                return
            try:
                await asyncio.wait_for(self._drain_now.wait(), 0.05)
            except TimeoutError:
                pass

    def skip_drain(self) -> None:
        """A second SIGTERM: stop waiting for running payloads."""
        if self._drain_now is not None:
            self._drain_now.set()

    async def __aenter__(self) -> Runtime:
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def persister_flush(self) -> None:
        if self.persister is not None:
            await self.persister.flush()

    def job_finished(self, coordinator: JobCoordinator) -> None:
        if self.coordinators.get(coordinator.job_id) is coordinator:
            del self.coordinators[coordinator.job_id]

    # -- submission (runtime-lifecycle.md §3) ------------------------------------------------
    async def validate_manifest(self, source: Any) -> dict[str, Any]:
        return load_bundle(source).to_dict()

    async def run_manifest(
        self,
        source: Any = None,
        wait: bool = False,
        timeout: float | None = None,
        json: bool = False,
        job_bundle: Bundle | None = None,
    ) -> Any:
        """Submit a bundle; returns the job id, or ``(job_id, record)`` with ``wait=True``."""
        job_id = await self.submit(job_bundle if job_bundle is not None else source)
        if not wait:
            return job_id
        return job_id, await self.wait_for_job(job_id, timeout)

    def check_accepting(self) -> None:
        """Raise :class:`ShuttingDown` when the node refuses new submissions (draining)."""
        if not self.accepting:
            raise ShuttingDown()

    async def submit(self, source: Any, payloads: dict[str, bytes] | None = None) -> str:
        """Load, validate, persist and start a job; ``payloads`` are extra files for a manifest source."""
        self.check_accepting()
        bundle = load_bundle(source)
        manifest = bundle.manifest
        job_id = job_id_for(str(manifest["graph_id"]))
        if bundle.root_path is None or payloads:
            dest = self.settings.bundles_store_dir / job_id
            bundle = await asyncio.to_thread(write_bundle, dest, manifest, payloads or {})
        record = self._initial_record(job_id, bundle)
        await self.store.acquire_lease(f"job:{job_id}", self.settings.node_name, LEASE_TTL_MS)
        coordinator = JobCoordinator(self, record, bundle)
        self.coordinators[job_id] = coordinator
        coordinator.save_record()
        coordinator.runtime_event("job_pending")
        if self.persister is not None:
            await self.persister.flush()
        else:
            await self.store.put_job(record)
        await coordinator.start()
        return job_id

    def _initial_record(self, job_id: str, bundle: Bundle) -> dict[str, Any]:
        manifest = bundle.manifest
        policies = manifest.get("policies") or {}
        now = now_iso()
        return {
            "job_id": job_id,
            "graph_id": manifest["graph_id"],
            "job_name": manifest.get("job_name") or manifest["graph_id"],
            "status": "pending",
            "submitted_at": now,
            "updated_at": now,
            "daemon": bool(manifest.get("daemon")),
            "root_agent_ids": list(manifest.get("entrypoints") or []),
            "placement_policy": policies.get("placement_policy", "local"),
            "recovery_policy": policies.get("recovery_mode", "local_restart"),
            "result": None,
            "manifest_ref": {
                "graph_id": manifest["graph_id"],
                "manifest_version": manifest.get("manifest_version"),
                "manifest_path": bundle.manifest_path,
                "job_path": bundle.root_path,
            },
        }

    # -- waiting and reading ---------------------------------------------------------------
    async def wait_for_job(self, job_id: str, timeout: float | None = None) -> dict[str, Any]:
        try:
            return await asyncio.wait_for(self._wait(job_id), timeout)
        except TimeoutError:
            raise WaitTimeoutError(f"timed out waiting for job {job_id}") from None

    async def _wait(self, job_id: str) -> dict[str, Any]:
        while True:
            coordinator = self.coordinators.get(job_id)
            if coordinator is not None:
                return await asyncio.shield(coordinator.done)
            record = await self.inspect_job(job_id)
            if record.get("status") in monitor.TERMINAL:
                return record
            await asyncio.sleep(_POLL_S)

    async def inspect_job(self, job_id: str) -> dict[str, Any]:
        await self.persister_flush()
        record = await self.store.get_job(job_id)
        if record is None:
            raise JobNotFound(job_id)
        return record

    async def inspect_agents(self, job_id: str) -> list[dict[str, Any]]:
        await self.inspect_job(job_id)
        return await self.store.get_agents(job_id)

    async def events(self, job_id: str, start: int = 0, stop: int | None = None) -> list[dict[str, Any]]:
        await self.inspect_job(job_id)
        return await self.store.read_events(job_id, start, stop)

    async def list_jobs(
        self,
        limit: int | None = None,
        include_terminal: bool = True,
        live_only: bool = False,
        statuses: list[str] | None = None,
    ) -> list[dict[str, Any]]:
        await self.persister_flush()
        records = await self.store.get_jobs(await self.store.job_ids())
        if not include_terminal:
            records = [r for r in records if r.get("status") not in monitor.TERMINAL]
        if statuses:
            records = [r for r in records if r.get("status") in statuses]
        records.sort(key=monitor.sort_key, reverse=True)
        summaries = []
        for record in records:
            agents = await self.store.get_agents(record["job_id"])
            last = await self.store.read_events(record["job_id"], -1)
            summary = monitor.job_summary(record, agents, last[0] if last else None)
            if live_only and not summary["live?"]:
                continue
            summaries.append(summary)
            if limit and len(summaries) >= limit:
                break
        return summaries

    async def job_details(self, job_id: str, event_limit: int = 25) -> dict[str, Any]:
        record = await self.inspect_job(job_id)
        agents = await self.store.get_agents(job_id)
        events = await self.store.read_events(job_id)
        recent = events[-event_limit:] if event_limit > 0 else []
        summaries = sorted(
            (monitor.agent_summary(a) for a in agents),
            key=lambda s: (str(s["assigned_node"] or ""), str(s["agent_id"])),
        )
        details: dict[str, Any] = {
            "job": record,
            "summary": monitor.job_summary(record, agents, events[-1] if events else None),
            "agents": summaries,
            "recent_events": list(reversed(recent)),
            "sandboxes": monitor.sandboxes_from_events(events),
        }
        if record.get("status") == "failed" and record.get("error") is not None:
            details["failure"] = record["error"]
        return details

    async def inspect_nodes(self) -> list[dict[str, Any]]:
        names = await self.store.node_names()
        me = self.settings.node_name
        return [
            {
                "name": me,
                "connected_nodes": sorted(set(names) | {me}),
                "self?": True,
                "scheduler_hint": "cluster_member",
                "executor_pools": self.execution.pool_stats(),
                "hardware": await asyncio.to_thread(self.resources.hardware),
            }
        ]

    async def cluster_overview(self, **list_jobs_options: Any) -> dict[str, Any]:
        return {"nodes": await self.inspect_nodes(), "jobs": await self.list_jobs(**list_jobs_options)}

    # -- node API: bundle registry, live events, metrics, SIGHUP reload -------------------------
    @property
    def bundles(self) -> BundleRegistry:
        """The bundle registry (operations.md §8), created on first use."""
        if self._bundles is None:
            self._bundles = BundleRegistry(self.settings)
        return self._bundles

    def stream_events(
        self,
        job_id: str,
        after: int = -1,
        replay: bool = True,
        follow: bool = True,
        heartbeat_s: float | None = 5.0,
        limit: int = 0,
    ) -> AsyncGenerator[LiveItem, None]:
        """Stored then live events of a job as ``(index, event)``, heartbeats as ``(None, {...})``."""
        return follow_events(self, job_id, after, replay, follow, heartbeat_s, limit)

    async def metrics(self) -> dict[str, Any]:
        """Job counts by status and the node count (api.md §4 ``GET /metrics``)."""
        await self.persister_flush()
        by_status: dict[str, int] = {}
        records = await self.store.get_jobs(await self.store.job_ids())
        for record in records:
            status = str(record.get("status"))
            by_status[status] = by_status.get(status, 0) + 1
        nodes = set(await self.store.node_names()) | {self.settings.node_name}
        return {
            "jobs": {"total": len(records), "by_status": by_status},
            "nodes": {"total": len(nodes)},
            "source": "system_summary",
        }

    async def agent_graph(self, job_id: str) -> dict[str, Any]:
        """Agents and edges with message counts (api.md §4 ``GET /jobs/{id}/agent-graph``)."""
        from . import event_views

        record = await self.inspect_job(job_id)
        agents = await self.store.get_agents(job_id)
        events = await self.store.read_events(job_id)
        return event_views.agent_graph(record, await self._manifest_of(record), agents, events)

    async def dead_letters(self, job_id: str) -> dict[str, Any]:
        """Messages routed to agents that do not exist (api.md §4 ``GET /jobs/{id}/dead-letters``)."""
        from . import event_views

        await self.inspect_job(job_id)
        return event_views.dead_letters(job_id, await self.store.read_events(job_id))

    async def _manifest_of(self, record: dict[str, Any]) -> dict[str, Any] | None:
        coordinator = self.coordinators.get(record["job_id"])
        if coordinator is not None:
            return coordinator.manifest
        path = (record.get("manifest_ref") or {}).get("job_path")
        try:
            return (await asyncio.to_thread(load_bundle, path)).manifest if path else None
        except Exception:  # the bundle is gone or no longer valid: the graph falls back to the agents
            logger.info("manifest of job %s unavailable for its agent graph", record["job_id"])
            return None

    async def reload_config(self) -> dict[str, Any]:
        """SIGHUP (runtime-lifecycle.md §7): re-read resource limits from the store, rescan bundles."""
        stored = await self.store.get_doc("resource:limits") or {}
        self.resources.limits.update({k: v for k, v in stored.items() if k in self.resources.limits})
        self.execution.leases.set_cpu_limit(self.resources.limits["cpu"])
        added = await self.bundles.scan()
        return {"limits": dict(self.resources.limits), "bundles_added": added}

    # -- control (runtime-lifecycle.md §5) -----------------------------------------------------
    async def _coordinator(self, job_id: str, terminal_error: str) -> JobCoordinator:
        coordinator = self.coordinators.get(job_id)
        if coordinator is not None:
            return coordinator
        record = await self.inspect_job(job_id)
        if record.get("status") in monitor.TERMINAL:
            raise StateError(terminal_error)
        raise StateError(f"job {job_id} is not running in the connected cluster")

    async def pause(self, job_id: str) -> str:
        return await (await self._coordinator(job_id, "job is not running")).pause()

    async def resume(self, job_id: str) -> str:
        return await (await self._coordinator(job_id, "job is not paused")).resume()

    async def send_message(self, job_id: str, agent_id: str, message: Any) -> str:
        coordinator = await self._coordinator(job_id, f"job {job_id} is not running in the connected cluster")
        return await coordinator.send_message(agent_id, message)

    async def cancel(self, job_id: str) -> str:
        coordinator = self.coordinators.get(job_id)
        if coordinator is not None:
            return await coordinator.cancel()
        record = await self.inspect_job(job_id)
        if record.get("status") in monitor.TERMINAL:
            raise StateError("job is already in a terminal state")
        await self._force_cancel(record)
        return "cancelled"

    async def _force_cancel(self, record: dict[str, Any]) -> None:
        """Cancel an active job that has no coordinator here (an orphan)."""
        from .store.base import Batch

        job_id = record["job_id"]
        record = {
            **record,
            "status": "cancelled",
            "result": {"reason": "forced cancellation of orphaned job"},
            "updated_at": now_iso(),
        }
        event = {"type": "job_cancelled", "job_id": job_id, "timestamp": now_iso(), "reason": "forced cancellation"}
        seq = await self.store.count_events(job_id)
        await self.store.write_batch(Batch(jobs={job_id: record}, events={job_id: (seq, [event])}))

    async def cleanup_jobs(self, all: bool = False) -> dict[str, Any]:
        await self.persister_flush()
        deleted = []
        for record in await self.store.get_jobs(await self.store.job_ids()):
            job_id = record["job_id"]
            if record.get("status") not in monitor.TERMINAL:
                if not all:
                    continue
                try:
                    await self.cancel(job_id)
                except StateError:
                    pass
            await self.store.delete_job(job_id)
            deleted.append(job_id)
        return {"deleted_count": len(deleted), "deleted_jobs": deleted}

    # -- resources -------------------------------------------------------------------------
    async def resource_report(self) -> dict[str, Any]:
        return await asyncio.to_thread(self.resources.report)

    async def set_resource_limits(self, body: Any) -> dict[str, Any]:
        limits = validate_limits(body)
        self.resources.limits.update(limits)
        await self.store.put_doc("resource:limits", dict(self.resources.limits))
        self.execution.leases.set_cpu_limit(self.resources.limits["cpu"])
        return await self.resource_report()

    # -- node restart (runtime-lifecycle.md §7) ---------------------------------------------
    async def recover_jobs(self) -> list[str]:
        """Take over every active job whose lease is free or ours (``mn server`` start)."""
        return await recovery.recover_jobs(self)
