"""The message engine of a job: mailboxes, the ready queue, actions, routing, events.

:class:`Dispatcher` is the half of a job coordinator that moves messages. It runs one loop per
job: agents with queued messages wait on a ready queue; the loop hands each one message at a
time. Synchronous ``handle_message`` calls (routers, aggregators, sensors, most modules) run
inline with no task switch; coroutine handlers (executors, async modules) run as tasks while the
agent's mailbox keeps queueing. Events and snapshots are buffered for the write-behind persister.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any

from ._util import now_iso
from .agent_worker import AgentWorker, encode_recovery_state
from .agents.base import AgentFailure
from .message import Message, derive, normalize, stringify_keys
from .store.base import Batch

logger = logging.getLogger(__name__)

__all__ = ["Dispatcher"]

_BUDGET = 512  # messages handled before yielding to the event loop


class Dispatcher:
    """Mailboxes, scheduling, action dispatch and event/snapshot buffering for one job."""

    job_id: str
    record: dict[str, Any]
    workers: dict[str, AgentWorker]
    outbound: dict[str, list[dict[str, Any]]]

    def __init__(self, persister: Any) -> None:
        self._persister = persister
        self._ready: deque[AgentWorker] = deque()
        self._wake = asyncio.Event()
        self._idle = False
        self.terminal = False
        self.draining = False  # node shutdown: start no new messages
        self.event_seq = 0
        self._events: list[dict[str, Any]] = []
        self._events_first = 0
        self._dirty: list[AgentWorker] = []
        self._record_dirty = False
        self._touched = False
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- buffering for the persister -------------------------------------------------------
    def _touch(self) -> None:
        if not self._touched and self._persister is not None:
            self._touched = True
            self._persister.touch(self)

    def collect(self, batch: Batch) -> None:
        job_id = self.job_id
        if self._events:
            existing = batch.events.get(job_id)
            if existing is not None:
                existing[1].extend(self._events)
            else:
                batch.events[job_id] = (self._events_first, self._events)
            self._events = []
        if self._record_dirty:
            batch.jobs[job_id] = dict(self.record)
            self._record_dirty = False
        if self._dirty:
            agents = batch.agents.setdefault(job_id, {})
            for w in self._dirty:
                agents[w.agent_id] = w.snapshot(job_id)
                w.dirty = False
            self._dirty = []
        self._touched = False

    def rebase_events(self, delta: int) -> None:
        self.event_seq += delta
        self._events_first += delta

    def mark(self, w: AgentWorker) -> None:
        if not w.dirty:
            w.dirty = True
            self._dirty.append(w)
            self._touch()

    def save_record(self, **changes: Any) -> None:
        self.record.update(changes)
        self.record["updated_at"] = now_iso()
        self._record_dirty = True
        self._touch()

    def _append(self, event: dict[str, Any]) -> None:
        if not self._events:
            self._events_first = self.event_seq
        self._events.append(event)
        self.event_seq += 1
        self._touch()

    def runtime_event(self, event_type: str, **fields: Any) -> None:
        self._append({"type": event_type, "job_id": self.job_id, "timestamp": now_iso(), **fields})

    def agent_event(self, agent_id: str, event_type: str, payload: dict[str, Any]) -> None:
        self._append(
            {
                "type": event_type,
                "job_id": self.job_id,
                "timestamp": now_iso(),
                "agent_id": agent_id,
                "payload": payload,
            }
        )

    # -- scheduling ------------------------------------------------------------------------
    def schedule(self, w: AgentWorker) -> None:
        if not w.scheduled and w.running and not w.busy and not w.paused:
            w.scheduled = True
            self._ready.append(w)
            if self._idle:
                self._idle = False
                self._wake.set()

    def spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def run_loop(self) -> None:
        ready = self._ready
        while not self.terminal:
            if not ready or self.draining:
                self._idle = True
                self._wake.clear()
                await self._wake.wait()
                continue
            budget = _BUDGET
            while ready and budget and not self.terminal:
                w = ready.popleft()
                w.scheduled = False
                if w.mailbox and w.running and not w.busy and not w.paused and not self.draining:
                    self._step(w)
                budget -= 1
            await asyncio.sleep(0)

    def wake(self) -> None:
        self._idle = False
        self._wake.set()

    # -- one message -----------------------------------------------------------------------
    def _step(self, w: AgentWorker) -> None:
        msg = w.mailbox.popleft()
        w.inflight = msg
        w.processed += 1
        ctx = dict(w.base_context)
        ctx["invocation"] = w.processed
        self.agent_event(w.agent_id, "agent_message_received", msg.summary())
        self.mark(w)
        try:
            result = w.agent.handle_message(msg, w.state, ctx)
        except AgentFailure as exc:
            self.agent_failed(w, exc.reason)
            return
        except Exception as exc:
            logger.exception("agent %s of job %s failed", w.agent_id, self.job_id)
            self.agent_failed(w, f"{type(exc).__name__}: {exc}")
            return
        if type(result) is tuple:
            self._apply(w, msg, result)
        elif asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
            w.busy = True
            if w.agent.mutates_state_while_awaiting:
                w.frozen_recovery = encode_recovery_state(w.recovery_state())
            w.task = self.spawn(self._finish(w, msg, result))
        else:
            self._apply(w, msg, result)

    async def _finish(self, w: AgentWorker, msg: Message, pending: Any) -> None:
        try:
            result = await pending
        except asyncio.CancelledError:
            w.task = None
            if not (self.terminal or self.draining or w.stopping):
                self.agent_crashed(w)
            return
        except AgentFailure as exc:
            w.task = None
            self.agent_failed(w, exc.reason)
            return
        except Exception as exc:
            w.task = None
            logger.exception("agent %s of job %s failed", w.agent_id, self.job_id)
            self.agent_failed(w, f"{type(exc).__name__}: {exc}")
            return
        w.task = None
        w.busy = False
        w.frozen_recovery = None
        if self.terminal or not w.running:
            return
        self._apply(w, msg, result)

    def _apply(self, w: AgentWorker, msg: Message, result: Any) -> None:
        try:
            state, actions = result
        except (TypeError, ValueError):
            self.agent_failed(w, f"handle_message must return (state, actions), got {type(result).__name__}")
            return
        w.state = state
        requeue = self.run_actions(w, msg, actions or ())
        w.inflight = None
        self.mark(w)
        if requeue is not None:
            self._requeue_later(w, msg, requeue)
        elif w.mailbox:
            self.schedule(w)

    def _requeue_later(self, w: AgentWorker, msg: Message, delay_ms: float) -> None:
        """Lease queue limit hit: the message goes back to the head of the mailbox after a delay."""
        w.busy = True
        w.mailbox.appendleft(msg)

        def release() -> None:
            w.busy = False
            if w.running and not self.terminal:
                self.schedule(w)

        asyncio.get_running_loop().call_later(delay_ms / 1000.0, release)

    # -- actions ---------------------------------------------------------------------------
    def run_actions(self, w: AgentWorker, incoming: Message, actions: Any) -> float | None:
        """Execute ``actions`` in order; returns a requeue delay when the message must be retried."""
        untrusted = w.agent_type == "module"
        for action in actions:
            if self.terminal:
                return None
            kind = action[0]
            if kind == "emit":
                body = stringify_keys(action[2]) if untrusted else action[2]
                opts = action[3] if len(action) > 3 else None
                agent_id = w.agent_id
                for target in w.routes_for(action[1], self.outbound[agent_id]):
                    self.deliver(target, derive(incoming, agent_id, target, action[1], body, opts))
            elif kind == "event":
                payload = action[2] if len(action) > 2 else {}
                self.agent_event(w.agent_id, str(action[1]), stringify_keys(payload) if untrusted else payload)
            elif kind == "emit_to":
                body = stringify_keys(action[3]) if untrusted else action[3]
                opts = action[4] if len(action) > 4 else None
                self.deliver(action[1], derive(incoming, w.agent_id, action[1], action[2], body, opts))
            elif kind == "emit_message":
                message = normalize(action[1], {"from": w.agent_id, "job_id": self.job_id, "class": "event"})
                self.deliver(message.to or "", message)
            elif kind in ("complete_job", "complete_run"):
                self.complete(w.agent_id, action[1] if len(action) > 1 else None)
            elif kind == "checkpoint":
                w.checkpoint = action[1] if len(action) > 1 else None
                self.mark(w)
                if self._persister is not None:
                    self._persister.flush_soon()
            elif kind == "__requeue_head__":
                return float(action[1])
            elif kind == "complete_step":
                continue  # no workflow ledger in flat jobs
            else:
                logger.warning("agent %s returned an unknown action %r (ignored)", w.agent_id, kind)
        return None

    def deliver(self, target_id: str, msg: Message) -> None:
        if self.terminal:
            return
        w = self.workers.get(target_id)
        if w is None:
            self.runtime_event("dead_letter", agent_id=target_id, message=msg.to_dict())
            logger.error("agent %s is not running for job %s", target_id, self.job_id)
            return
        w.mailbox.append(msg)
        self.mark(w)
        if not w.scheduled and w.running and not w.busy and not w.paused:
            self.schedule(w)

    # -- provided by the coordinator -----------------------------------------------------------
    def complete(self, agent_id: str, output: Any) -> None:
        raise NotImplementedError

    def agent_failed(self, w: AgentWorker, reason: Any) -> None:
        raise NotImplementedError

    def agent_crashed(self, w: AgentWorker) -> None:
        raise NotImplementedError
