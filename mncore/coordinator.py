"""One job's coordinator: bootstrap, completion and failure, control operations, recovery.

The message engine (mailboxes, ready queue, actions) is :class:`~mncore.dispatch.Dispatcher`;
this module adds the job lifecycle of runtime-lifecycle.md §3-§7 on top of it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from . import error_envelope
from ._util import now_iso
from .agent_worker import AgentWorker
from .agents import create_agent
from .dispatch import Dispatcher
from .errors import AgentNotFound, StateError
from .manifest import inbound_edges, outbound_edges
from .message import normalize

if TYPE_CHECKING:
    from .bundle import Bundle
    from .runtime import Runtime

logger = logging.getLogger(__name__)

__all__ = ["JobCoordinator"]

LEASE_TTL_MS = 10_000
LEASE_RENEW_S = 3.0
STOP_TIMEOUT_S = 5.0


class _Host:
    """What builtin agents may use beyond the spec context."""

    __slots__ = ("agent_id", "coordinator", "execution", "job_id", "node_name")

    def __init__(self, coordinator: JobCoordinator, agent_id: str) -> None:
        self.coordinator = coordinator
        self.agent_id = agent_id
        self.job_id = coordinator.job_id
        self.node_name = coordinator.rt.settings.node_name
        self.execution = coordinator.rt.execution

    def event(self, event_type: str, payload: dict[str, Any]) -> None:
        if not self.coordinator.terminal:
            self.coordinator.agent_event(self.agent_id, event_type, payload)

    def runtime_event(self, event_type: str, fields: dict[str, Any]) -> None:
        self.coordinator.runtime_event(event_type, **fields)


class JobCoordinator(Dispatcher):
    """Owns one running job on this node."""

    def __init__(self, rt: Runtime, record: dict[str, Any], bundle: Bundle, *, event_seq: int = 0) -> None:
        super().__init__(rt.persister)
        self.rt = rt
        self.record = record
        self.job_id: str = record["job_id"]
        self.bundle = bundle
        self.manifest: dict[str, Any] = bundle.manifest
        self.outbound = outbound_edges(self.manifest)
        self.inbound = inbound_edges(self.manifest)
        policies = self.manifest.get("policies") or {}
        attempts = policies.get("max_agent_restart_attempts", 3)
        self.max_restarts = attempts if isinstance(attempts, int) and not isinstance(attempts, bool) else 3
        self.daemon = bool(self.manifest.get("daemon"))
        self.workers = {}
        self.event_seq = event_seq
        self.done: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._health_due = False
        self._loop_task: asyncio.Task[Any] | None = None
        self._ticker_task: asyncio.Task[Any] | None = None

    # -- workers ---------------------------------------------------------------------------
    def _context(self, node: dict[str, Any]) -> dict[str, Any]:
        b = self.bundle
        config = dict(node.get("config") or {})
        config.update(__bundle_root=b.root_path, __manifest_path=b.manifest_path, __payloads_path=b.payloads_path)
        node_id = node["node_id"]
        return {
            "job_id": self.job_id,
            "node": {**node, "config": config},
            "outbound_edges": self.outbound.get(node_id, []),
            "inbound_edges": self.inbound.get(node_id, []),
            "bundle_root": b.root_path,
            "manifest_path": b.manifest_path,
            "payloads_path": b.payloads_path,
            "template_type": node.get("type") or "generic",
        }

    def _new_worker(self, node: dict[str, Any]) -> AgentWorker:
        context = self._context(node)
        agent = create_agent(context["node"])
        agent.host = _Host(self, node["node_id"])
        w = AgentWorker(node, agent, self.rt.settings.node_name, self.rt.settings.agent_heartbeat_interval_ms)
        w.base_context = context
        w.outbound_targets = [e["to_node"] for e in context["outbound_edges"]]
        return w

    # -- bootstrap (§3.5) ------------------------------------------------------------------
    async def start(self) -> None:
        try:
            self.runtime_event("job_validated")
            self.runtime_event("job_scheduled", node=self.rt.settings.node_name)
            for node in self.manifest["nodes"]:
                w = self._new_worker(node)
                w.state = w.agent.init(w.base_context["node"])
                w.running = True
                w.last_heartbeat_at = now_iso()
                self.workers[w.agent_id] = w
                self.mark(w)
            self._seed()
        except Exception as exc:
            logger.exception("bootstrap of job %s failed", self.job_id)
            self.fail({"error": error_envelope.message_of(exc)}, error_envelope.message_of(exc), None)
            await self._finalize()
            return
        self.save_record(status="running")
        self.runtime_event("job_running")
        await self.rt.persister_flush()
        self._launch()

    async def take_over(self, snapshots: list[dict[str, Any]]) -> None:
        """Resume an active job from its agent snapshots (node restart).

        Every agent is restarted from its snapshot at once, before any message moves, so no
        message can reach an agent that is not restored yet. Each counts as a restart attempt.
        """
        by_id = {s.get("agent_id"): s for s in snapshots}
        self.runtime_event("job_recovery_started")
        restored = []
        for node in self.manifest["nodes"]:
            snapshot = by_id.get(node["node_id"])
            restarts = int(((snapshot or {}).get("metadata") or {}).get("restart_count") or 0)
            if not self.daemon and restarts >= self.max_restarts:
                text = f"agent {node['node_id']} exceeded restart attempts ({self.max_restarts})"
                self.fail({"agent_id": node["node_id"], "error": text}, text, node["node_id"])
                await self._finalize()
                return
            try:
                restored.append(self._restore(node, snapshot, restarts + 1, []))
            except Exception as exc:
                logger.exception("takeover of job %s failed", self.job_id)
                text = f"agent {node['node_id']} could not be restarted: {exc}"
                self.fail({"agent_id": node["node_id"], "error": text}, text, node["node_id"])
                await self._finalize()
                return
        for w in restored:
            self._recover(w)
        await self.rt.persister_flush()
        self._launch()

    def _restore(
        self, node: dict[str, Any], snapshot: dict[str, Any] | None, attempt: int, arrived: list[Any]
    ) -> AgentWorker:
        """A new worker for ``node`` restored from ``snapshot``, registered and running."""
        agent_id = node["node_id"]
        self.runtime_event("agent_recovery_started", agent_id=agent_id, attempt=attempt)
        w = self._new_worker(node)
        if snapshot is not None:
            w.restore_from(snapshot, arrived)
        else:
            w.state = w.agent.init(w.base_context["node"])
            w.mailbox.extend(arrived)
        w.restarts = attempt
        w.running = True
        self.workers[agent_id] = w
        self.runtime_event("agent_recovered", agent_id=agent_id, attempt=attempt)
        self.mark(w)
        return w

    def _launch(self) -> None:
        for w in self.workers.values():
            if w.mailbox:
                self.schedule(w)
        self._loop_task = self.spawn(self.run_loop())
        self._ticker_task = self.spawn(self._ticker())

    def _seed(self) -> None:
        inputs = self.manifest.get("initial_inputs") or {}
        for entry in self.manifest.get("entrypoints") or []:
            payloads = inputs.get(entry)
            if payloads is None:
                payloads = inputs.get("__entrypoints__")
            if payloads is None:
                payloads = [{}]
            for payload in payloads:
                defaults = {"from": "runtime", "to": entry, "type": "init", "class": "command", "job_id": self.job_id}
                self.deliver(entry, normalize(payload, defaults))

    # -- completion and failure (§4) -------------------------------------------------------
    def complete(self, agent_id: str, output: Any) -> None:
        if self.terminal:
            return
        self.terminal = True
        result = {"agent_id": agent_id, "output": output}
        self.save_record(status="completed", result=result)
        self.runtime_event("job_completed", agent_id=agent_id, result=result)
        self.spawn(self._finalize())

    def agent_failed(self, w: AgentWorker, reason: Any) -> None:
        w.busy = False
        w.frozen_recovery = None
        self.mark(w)  # its snapshot shows the failure (e.g. an executor's last_error)
        if self.terminal:
            return
        text = error_envelope.message_of(reason)
        envelope = error_envelope.build(reason, agent_id=w.agent_id, node=self.rt.settings.node_name)
        self.runtime_event("agent_failed", agent_id=w.agent_id, error=envelope)
        result: dict[str, Any] = {"agent_id": w.agent_id, "error": text}
        if isinstance(reason, dict):
            result["details"] = reason
        self.fail(result, text, w.agent_id, envelope)
        self.spawn(self._finalize())

    def fail(self, result: dict[str, Any], text: str, agent_id: str | None, envelope: Any = None) -> None:
        self.terminal = True
        envelope = envelope or error_envelope.build(text, agent_id=agent_id, node=self.rt.settings.node_name)
        changes: dict[str, Any] = {
            "status": "failed",
            "result": result,
            "error": envelope,
            "reason": text,
            "status_reason": envelope["desc"],
        }
        fields: dict[str, Any] = {"reason": text, "error": envelope, "status_reason": envelope["desc"]}
        if agent_id is not None:
            changes["agent_id"] = agent_id
            fields = {"agent_id": agent_id, **fields}
        self.save_record(**changes)
        self.runtime_event("job_failed", **fields)

    async def _stop_agents(self) -> None:
        tasks = []
        for w in self.workers.values():
            if w.task is not None and not w.task.done():
                w.stopping = True
                w.task.cancel()
                tasks.append(w.task)
        if tasks:
            await asyncio.wait(tasks, timeout=STOP_TIMEOUT_S)
        self.wake()

    async def _finalize(self) -> None:
        """Agents stopped, payloads killed, leases released, sandboxes removed, record durable."""
        await self._stop_agents()
        self.rt.execution.leases.release_where(job_id=self.job_id)
        try:
            await self.rt.execution.cleanup_job(self.job_id)
        except Exception:
            logger.exception("sandbox cleanup of job %s failed", self.job_id)
        for w in self.workers.values():
            w.running = False
        # Issue #5 fix: wait out a store outage here. A plain flush raised StoreUnavailable when the
        # store was down at the terminal transition, killing this task: `done` was never set, the
        # lease never released, and the job hung forever.
        if self.rt.persister is not None:
            await self.rt.persister.flush_durable()
        await self._release_job_lease()
        if self._ticker_task is not None:
            self._ticker_task.cancel()
        if not self.done.done():
            self.done.set_result(dict(self.record))
        self.rt.job_finished(self)

    async def _release_job_lease(self) -> None:
        try:
            await self.rt.store.release_lease(f"job:{self.job_id}", self.rt.settings.node_name)
        except Exception:
            logger.warning("could not release the lease of job %s", self.job_id, exc_info=True)

    # -- control (§5) ----------------------------------------------------------------------
    async def pause(self) -> str:
        if self.record.get("status") != "running" or self.terminal:
            raise StateError("job is not running")
        for w in self.workers.values():
            w.paused = True
            self.mark(w)
        self.save_record(status="paused")
        self.runtime_event("job_paused")
        await self.rt.persister_flush()
        return "paused"

    async def resume(self) -> str:
        if self.record.get("status") != "paused" or self.terminal:
            raise StateError("job is not paused")
        for w in self.workers.values():
            w.paused = False
            self.mark(w)
            if w.mailbox:
                self.schedule(w)
        self.save_record(status="running")
        self.runtime_event("job_resumed")
        await self.rt.persister_flush()
        return "running"

    async def cancel(self, reason: str = "cancelled by operator") -> str:
        if self.terminal:
            raise StateError("job is already in a terminal state")
        self.terminal = True
        self.save_record(status="cancelled", result={"reason": reason})
        self.runtime_event("job_cancelled", reason=reason)
        await self._finalize()
        return "cancelled"

    async def send_message(self, agent_id: str, message: Any) -> str:
        if self.terminal or self.record.get("status") not in ("running", "paused"):
            raise StateError(f"job {self.job_id} is not running in the connected cluster")
        if agent_id not in self.workers:
            raise AgentNotFound(agent_id, self.job_id)
        defaults = {"from": "external", "type": "command", "class": "command", "job_id": self.job_id}
        msg = normalize(message, defaults)
        msg.envelope["to"] = agent_id
        msg.envelope["job_id"] = self.job_id
        self.deliver(agent_id, msg)
        await self.rt.persister_flush()
        return "delivered"

    async def shutdown(self) -> None:
        """Node shutdown: stop without a terminal transition; in-flight messages stay to be replayed."""
        self.draining = True
        await self._stop_agents()
        if self._ticker_task is not None:
            self._ticker_task.cancel()
        if self._loop_task is not None:
            self._loop_task.cancel()
        for w in self.workers.values():
            self.mark(w)
        await self.rt.persister_flush()
        await self._release_job_lease()

    # -- restart and recovery (§7) ---------------------------------------------------------
    def agent_crashed(self, w: AgentWorker) -> None:
        """An agent's worker died outside ``handle_message``: it is missing until restarted."""
        logger.warning("agent %s of job %s crashed; it will be restarted", w.agent_id, self.job_id)
        w.running = False
        w.busy = False
        self.mark(w)
        self._health_due = True
        self.spawn(self._health_check())

    def kill_agent(self, agent_id: str) -> None:
        """Simulate the loss of an agent's worker (tests, lost worker processes)."""
        w = self.workers[agent_id]
        if w.task is not None and not w.task.done():
            w.task.cancel()  # _finish sees an external cancel and reports the crash
        else:
            self.agent_crashed(w)

    async def _health_check(self) -> None:
        if self.terminal or self.draining:
            return
        self._health_due = False
        for agent_id, w in list(self.workers.items()):
            if not w.running and not self.terminal:
                await self._restart(agent_id, w)

    async def _restart(self, agent_id: str, old: AgentWorker) -> None:
        if not self.daemon and old.restarts >= self.max_restarts:
            text = f"agent {agent_id} exceeded restart attempts ({self.max_restarts})"
            self.fail({"agent_id": agent_id, "error": text}, text, agent_id)
            await self._finalize()
            return
        await self.rt.persister_flush()
        snapshot = await self.rt.store.get_agent(self.job_id, agent_id)
        if self.terminal or self.workers.get(agent_id) is not old:
            return
        try:
            w = self._restore(old.node, snapshot, old.restarts + 1, self._arrived_since(old, snapshot))
        except Exception as exc:
            logger.exception("restart of agent %s failed", agent_id)
            old.restarts += 1
            self.agent_failed(old, f"agent {agent_id} could not be restarted: {exc}")
            return
        self._recover(w)

    @staticmethod
    def _arrived_since(old: AgentWorker, snapshot: dict[str, Any] | None) -> list[Any]:
        """Messages the snapshot does not hold yet (delivered while the flush was being written)."""
        if snapshot is None:
            return list(old.mailbox)
        known = {m.get("envelope", {}).get("message_id") for m in snapshot.get("pending_messages") or []}
        inflight = snapshot.get("inflight_message")
        if inflight:
            known.add(inflight.get("envelope", {}).get("message_id"))
        return [m for m in old.mailbox if m.envelope.get("message_id") not in known]

    def _recover(self, w: AgentWorker) -> None:
        control = normalize(
            {}, {"from": w.agent_id, "to": w.agent_id, "type": "recovery", "class": "control", "job_id": self.job_id}
        )
        ctx = dict(w.base_context)
        ctx["invocation"] = w.processed + 1
        try:
            state, actions = w.agent.recover(w.state, ctx)
        except Exception as exc:
            self.agent_failed(w, f"recover failed: {exc}")
            return
        w.state = state
        self.run_actions(w, control, actions or ())
        if w.mailbox:
            self.schedule(w)

    # -- periodic duties -------------------------------------------------------------------
    async def _ticker(self) -> None:
        """Heartbeats, health checks and lease renewal; a failing duty is logged and retried, never fatal."""
        settings = self.rt.settings
        health_s = settings.job_health_check_interval_ms / 1000.0
        beat_s = settings.agent_heartbeat_interval_ms / 1000.0
        step = min(health_s, beat_s, LEASE_RENEW_S)
        now = time.monotonic()
        next_health, next_beat, next_lease = now + health_s, now + beat_s, now + LEASE_RENEW_S
        first = self._health_due
        while not self.terminal:
            if not first:
                await asyncio.sleep(step)
            now = time.monotonic()
            try:
                if now >= next_beat:
                    next_beat = now + beat_s
                    self._heartbeat()
                if first or now >= next_health or self._health_due:
                    first, next_health = False, now + health_s
                    await self._health_check()
                if now >= next_lease:
                    next_lease = now + LEASE_RENEW_S
                    await self._renew_lease()
            except Exception:  # e.g. the store is unreachable for longer than its own retries
                logger.exception("periodic duties of job %s failed; retrying at the next tick", self.job_id)
                first = False

    def _heartbeat(self) -> None:
        stamp = now_iso()
        for w in self.workers.values():
            if w.running:
                w.last_heartbeat_at = stamp
                self.mark(w)

    async def _renew_lease(self) -> None:
        try:
            ok = await self.rt.store.renew_lease(f"job:{self.job_id}", self.rt.settings.node_name, LEASE_TTL_MS)
        except Exception:
            logger.warning("lease renewal of job %s failed", self.job_id, exc_info=True)
            return
        if not ok:
            # Expired during a store outage with nobody else taking it: take it again.
            if await self.rt.store.acquire_lease(f"job:{self.job_id}", self.rt.settings.node_name, LEASE_TTL_MS):
                logger.warning("the lease of job %s had expired; re-acquired it", self.job_id)
                return
            logger.error("lost the lease of job %s: another node owns it; stopping here", self.job_id)
            await self.shutdown()
            self.rt.job_finished(self)
