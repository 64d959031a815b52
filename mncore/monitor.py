"""Read model for monitoring: job summaries, job details, agent summaries (runtime-lifecycle.md §11.3).

Pure functions over stored documents; the :class:`~mncore.runtime.Runtime` feeds them from the
store. Keys ending in ``?`` are the seed's exact field names.
"""

from __future__ import annotations

import time
from typing import Any

from ._util import ms_from_iso

__all__ = ["TERMINAL", "ACTIVE", "agent_summary", "job_summary", "last_event_label", "sandboxes_from_events"]

TERMINAL = frozenset(("completed", "failed", "cancelled"))
ACTIVE = frozenset(("pending", "validated", "scheduled", "running", "paused", "pausing"))
_LIVE_FLOOR_MS = 10_000


def _now_ms() -> float:
    return time.time() * 1000.0


def _agent_live(snapshot: dict[str, Any], now_ms: float) -> bool:
    beat = ms_from_iso(snapshot.get("last_heartbeat_at"))
    if beat is None:
        return False
    interval = (snapshot.get("metadata") or {}).get("heartbeat_interval_ms") or 2000
    return now_ms - beat <= max(3 * interval, _LIVE_FLOOR_MS)


def agent_summary(snapshot: dict[str, Any], now_ms: float | None = None) -> dict[str, Any]:
    now_ms = _now_ms() if now_ms is None else now_ms
    state = snapshot.get("current_state")
    state = state if isinstance(state, dict) else {}
    meta = snapshot.get("metadata") or {}
    executor = snapshot.get("agent_type") == "executor"
    depth = int(snapshot.get("mailbox_depth") or 0)
    last_error = state.get("last_error")
    last_result = state.get("last_result")
    paused = bool(meta.get("paused"))
    if paused:
        status = "paused"
    elif executor and last_error:
        status = "error"
    elif executor and depth > 0:
        status = "queued"
    elif executor and last_result:
        status = "completed"
    elif executor:
        status = "running"
    elif depth > 0:
        status = "busy"
    else:
        status = "ready"
    running = executor and not last_error and (not state.get("runs") or not last_result)
    result = last_result if isinstance(last_result, dict) else {}
    return {
        "agent_id": snapshot.get("agent_id"),
        "agent_type": snapshot.get("agent_type"),
        "type": snapshot.get("type"),
        "assigned_node": snapshot.get("assigned_node"),
        "processed_messages": snapshot.get("processed_messages", 0),
        "mailbox_depth": depth,
        "paused?": paused,
        "last_heartbeat_at": snapshot.get("last_heartbeat_at"),
        "live?": _agent_live(snapshot, now_ms),
        "status": status,
        "running?": bool(running),
        "last_error": last_error,
        "sandbox_name": result.get("sandbox_name"),
        "lease": result.get("lease"),
    }


def last_event_label(event: dict[str, Any] | None) -> str | None:
    if not event:
        return None
    agent = event.get("agent_id")
    return f"{event.get('type')}({agent})" if agent else str(event.get("type"))


def job_summary(
    record: dict[str, Any], agents: list[dict[str, Any]], last_event: dict[str, Any] | None, now_ms: float | None = None
) -> dict[str, Any]:
    now_ms = _now_ms() if now_ms is None else now_ms
    summaries = [agent_summary(a, now_ms) for a in agents]
    executors = [s for s in summaries if s["agent_type"] == "executor"]
    status = record.get("status")
    updated = ms_from_iso(record.get("updated_at") or record.get("submitted_at"))
    live = status not in TERMINAL and (
        any(s["live?"] for s in summaries) or (updated is not None and now_ms - updated <= _LIVE_FLOOR_MS)
    )
    sandbox_names: list[str] = []
    for s in summaries:
        name = s["sandbox_name"]
        if name and name not in sandbox_names:
            sandbox_names.append(name)
    return {
        "job_id": record.get("job_id"),
        "graph_id": record.get("graph_id"),
        "job_name": record.get("job_name"),
        "status": status,
        "live?": live,
        "submitted_at": record.get("submitted_at"),
        "updated_at": record.get("updated_at"),
        "placement_policy": record.get("placement_policy", "local"),
        "recovery_policy": record.get("recovery_policy", "local_restart"),
        "executor_count": len(executors),
        "active_executors": sum(1 for s in executors if s["running?"]),
        "nodes": sorted({s["assigned_node"] for s in summaries if s["assigned_node"]}),
        "sandbox_names": sandbox_names,
        "last_event": last_event_label(last_event),
    }


def sandboxes_from_events(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for ev in events:
        if ev.get("type") == "sandbox_job_completed":
            payload = ev.get("payload") or {}
            out.append(
                {
                    "agent_id": ev.get("agent_id"),
                    "sandbox_name": payload.get("sandbox_name"),
                    "exit_code": payload.get("exit_code"),
                    "pool": payload.get("pool"),
                    "timestamp": ev.get("timestamp"),
                }
            )
    return out


def sort_key(summary: dict[str, Any]) -> str:
    return str(summary.get("updated_at") or summary.get("submitted_at") or "")
