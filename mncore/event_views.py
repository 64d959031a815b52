"""Read models derived from a job's event list: the agent graph and the dead letters (api.md §4).

Pure functions over stored documents, like :mod:`mncore.monitor`; the Runtime feeds them.

- :func:`agent_graph`: manifest nodes with their agents' live status, manifest edges
  (``source_event: "manifest"``) counted from ``agent_message_received`` events, plus observed
  agent-to-agent traffic no manifest edge explains (``source_event: "agent_message_received"``).
- :func:`dead_letters`: every ``dead_letter`` event with its position.
"""

from __future__ import annotations

from typing import Any

from .monitor import agent_summary

__all__ = ["agent_graph", "dead_letters"]

RECEIVED = "agent_message_received"


def _nodes(manifest: dict[str, Any] | None, agents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by_id = {str(a.get("agent_id")): agent_summary(a) for a in agents}
    declared = list((manifest or {}).get("nodes") or [])
    ids = [str(n.get("node_id")) for n in declared] + sorted(set(by_id) - {str(n.get("node_id")) for n in declared})
    spec = {str(n.get("node_id")): n for n in declared}
    out = []
    for node_id in ids:
        node, live = spec.get(node_id, {}), by_id.get(node_id, {})
        out.append(
            {
                "id": node_id,
                "label": node.get("label") or node.get("name") or node_id,
                "agent_type": node.get("agent_type") or live.get("agent_type"),
                "type": node.get("type") or live.get("type"),
                "status": live.get("status", "pending"),
                "assigned_node": live.get("assigned_node"),
                "processed_messages": live.get("processed_messages", 0),
                "mailbox_depth": live.get("mailbox_depth", 0),
            }
        )
    return out


def _matches(edge: dict[str, Any], source: str, target: str, message_type: Any) -> bool:
    wanted = edge.get("message_type")
    return edge["source"] == source and edge["target"] == target and wanted in ("*", None, message_type)


def _edge(edge_id: str, source: str, target: str, message_type: Any, source_event: str) -> dict[str, Any]:
    return {
        "id": edge_id,
        "source": source,
        "target": target,
        "message_type": message_type,
        "count": 0,
        "last_seen_at": None,
        "source_event": source_event,
    }


def _manifest_edges(manifest: dict[str, Any] | None) -> list[dict[str, Any]]:
    edges = []
    for i, edge in enumerate((manifest or {}).get("edges") or []):
        source, target = str(edge.get("from_node")), str(edge.get("to_node"))
        edge_id = str(edge.get("edge_id") or f"e{i}:{source}->{target}")
        edges.append(_edge(edge_id, source, target, edge.get("message_type"), "manifest"))
    return edges


def _edges(manifest: dict[str, Any] | None, node_ids: set[str], events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    edges = _manifest_edges(manifest)
    observed: dict[tuple[str, str, Any], dict[str, Any]] = {}
    for event in events:
        if event.get("type") != RECEIVED:
            continue
        payload = event.get("payload") or {}
        source, target, message_type = str(payload.get("from")), str(event.get("agent_id")), payload.get("type")
        if source not in node_ids:
            continue  # seeded by the runtime or sent from outside
        hits = [e for e in edges if _matches(e, source, target, message_type)]
        if not hits:
            key = (source, target, message_type)
            if key not in observed:
                observed[key] = _edge(
                    f"observed:{source}->{target}:{message_type}", source, target, message_type, RECEIVED
                )
            hits = [observed[key]]
        for edge in hits:
            edge["count"] += 1
            edge["last_seen_at"] = event.get("timestamp")
    return edges + list(observed.values())


def agent_graph(
    record: dict[str, Any], manifest: dict[str, Any] | None, agents: list[dict[str, Any]], events: list[dict[str, Any]]
) -> dict[str, Any]:
    """``{job_id, graph_id, status, nodes, edges, stats}`` for ``GET /jobs/{id}/agent-graph``."""
    nodes = _nodes(manifest, agents)
    edges = _edges(manifest, {n["id"] for n in nodes}, events)
    return {
        "job_id": record.get("job_id"),
        "graph_id": record.get("graph_id"),
        "status": record.get("status"),
        "nodes": nodes,
        "edges": edges,
        "stats": {
            "agent_count": len(nodes),
            "edge_count": len(edges),
            "message_count": sum(1 for e in events if e.get("type") == RECEIVED),
            "event_count": len(events),
        },
    }


def dead_letters(job_id: str, events: list[dict[str, Any]]) -> dict[str, Any]:
    """``{job_id, data: [{index, event_index, agent_id, reason, timestamp, message}]}``."""
    data: list[dict[str, Any]] = []
    for position, event in enumerate(events):
        if event.get("type") != "dead_letter":
            continue
        agent_id = event.get("agent_id")
        data.append(
            {
                "index": len(data),
                "event_index": position,
                "agent_id": agent_id,
                "reason": event.get("reason") or f"agent {agent_id} is not running",
                "timestamp": event.get("timestamp"),
                "message": event.get("message"),
            }
        )
    return {"job_id": job_id, "data": data}
