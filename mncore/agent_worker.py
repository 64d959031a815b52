"""One agent's runtime record inside its job coordinator: mailbox, state, counters, snapshot.

The coordinator schedules workers; a worker handles one message at a time. Its persisted
*agent snapshot* (runtime-lifecycle.md §11.2) is built lazily, only when the write-behind
persister flushes, so per-message work stays small.
"""

from __future__ import annotations

import asyncio
import base64
from collections import deque
from typing import TYPE_CHECKING, Any

from ._util import dumps, loads, now_iso
from .message import Message

if TYPE_CHECKING:
    from .agents.base import Agent

__all__ = ["AgentWorker", "decode_recovery_state", "encode_recovery_state"]


def encode_recovery_state(data: Any) -> str:
    """``metadata.recovery_state``: base64 of the JSON encoding of ``snapshot_state(state)``."""
    return base64.b64encode(dumps(data)).decode("ascii")


def decode_recovery_state(text: str | None) -> Any:
    if not text:
        return None
    return loads(base64.b64decode(text))


class AgentWorker:
    """Runtime-side record of one agent (one manifest node)."""

    __slots__ = (
        "agent",
        "agent_id",
        "agent_type",
        "assigned_node",
        "base_context",
        "busy",
        "checkpoint",
        "dirty",
        "emit_routes",
        "frozen_recovery",
        "heartbeat_interval_ms",
        "inflight",
        "last_heartbeat_at",
        "mailbox",
        "node",
        "outbound_targets",
        "paused",
        "processed",
        "restarts",
        "running",
        "scheduled",
        "state",
        "stopping",
        "task",
        "template",
    )

    def __init__(self, node: dict[str, Any], agent: Agent, assigned_node: str, heartbeat_interval_ms: int) -> None:
        self.node = node
        self.agent = agent
        self.agent_id: str = node["node_id"]
        self.agent_type: str = node["agent_type"]
        self.template: str = node.get("type") or "generic"
        self.assigned_node = assigned_node
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.state: Any = None
        self.mailbox: deque[Message] = deque()
        self.inflight: Message | None = None
        self.processed = 0
        self.paused = False
        self.running = False  # False = missing (not started, or crashed)
        self.busy = False  # an async handle_message is in progress
        self.scheduled = False  # on the coordinator's ready queue
        self.dirty = False  # snapshot needs writing
        self.restarts = 0
        self.checkpoint: Any = None  # data from the last ("checkpoint", data) action, if any
        self.frozen_recovery: str | None = None  # recovery state as of the start of an async message
        self.stopping = False  # the runtime itself is cancelling this agent's task
        self.last_heartbeat_at: str | None = None
        self.task: asyncio.Task[Any] | None = None
        self.base_context: dict[str, Any] = {}
        self.emit_routes: dict[str, list[str]] = {}
        self.outbound_targets: list[str] = []

    def routes_for(self, msg_type: str, outbound: list[dict[str, Any]]) -> list[str]:
        """Targets of an ``emit`` of ``msg_type``: matching edges (type or ``*``) in manifest order."""
        targets = self.emit_routes.get(msg_type)
        if targets is None:
            targets = [e["to_node"] for e in outbound if e.get("message_type") in (msg_type, "*")]
            self.emit_routes[msg_type] = targets
        return targets

    def recovery_state(self) -> Any:
        if self.checkpoint is not None:
            return self.checkpoint
        return self.agent.snapshot_state(self.state)

    def snapshot(self, job_id: str) -> dict[str, Any]:
        """The agent snapshot document (runtime-lifecycle.md §11.2)."""
        node = self.node
        inflight = self.inflight
        return {
            "agent_id": self.agent_id,
            "node_id": self.agent_id,
            "agent_type": self.agent_type,
            "type": self.template,
            "role": node.get("role"),
            "current_state": self.agent.inspect_state(self.state),
            "mailbox_depth": len(self.mailbox),
            "processed_messages": self.processed,
            "assigned_node": self.assigned_node,
            "inflight_message": inflight.fragment() if inflight is not None else None,
            "pending_messages": [m.fragment() for m in self.mailbox],
            "last_heartbeat_at": self.last_heartbeat_at,
            "parent_job_id": job_id,
            "metadata": {
                "paused": self.paused,
                "outbound_edges": self.outbound_targets,
                "heartbeat_interval_ms": self.heartbeat_interval_ms,
                "recovery_state": self.frozen_recovery or encode_recovery_state(self.recovery_state()),
                "restart_count": self.restarts,
                "running": self.running,
            },
        }

    def restore_from(self, snapshot: dict[str, Any], arrived: list[Message] | None = None) -> None:
        """Load counters, queue and recovery state from a persisted snapshot (restart, takeover).

        The queue is the snapshot's in-flight message first, then its pending messages, then
        ``arrived``: messages delivered in memory after that snapshot was written.
        """
        meta = snapshot.get("metadata") or {}
        data = decode_recovery_state(meta.get("recovery_state"))
        self.state = self.agent.restore_state(data)
        self.processed = int(snapshot.get("processed_messages") or 0)
        self.restarts = int(meta.get("restart_count") or 0)
        self.paused = bool(meta.get("paused"))
        self.mailbox.clear()
        inflight = snapshot.get("inflight_message")
        if inflight:
            self.mailbox.append(Message.from_dict(inflight))
        for raw in snapshot.get("pending_messages") or []:
            self.mailbox.append(Message.from_dict(raw))
        self.mailbox.extend(arrived or ())
        self.inflight = None
        self.last_heartbeat_at = now_iso()
