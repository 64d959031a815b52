"""Small job manifests shared by the server, gRPC and CLI tests."""

from __future__ import annotations

from typing import Any


def quick_job(graph_id: str = "quick") -> dict[str, Any]:
    """Completes at once: a router feeding an aggregator that completes after one message."""
    return {
        "manifest_version": "1.0",
        "graph_id": graph_id,
        "entrypoints": ["r"],
        "initial_inputs": {"r": [{"n": 1}]},
        "nodes": [
            {"node_id": "r", "agent_type": "router"},
            {"node_id": "out", "agent_type": "aggregator", "config": {"complete_after": 1}},
        ],
        "edges": [{"from_node": "r", "to_node": "out", "message_type": "*"}],
    }


def waiting_job(graph_id: str = "waiting") -> dict[str, Any]:
    """Stays running until a second message reaches ``r``."""
    manifest = quick_job(graph_id)
    manifest["nodes"][1]["config"]["complete_after"] = 2
    return manifest


def command_job(command: list[str], graph_id: str = "cmd", **config: Any) -> dict[str, Any]:
    """One executor running ``command``; its success completes the job."""
    node_config = {"command": command, "complete_job": True, **config}
    return {
        "manifest_version": "1.0",
        "graph_id": graph_id,
        "entrypoints": ["x"],
        "initial_inputs": {"x": [{}]},
        "nodes": [{"node_id": "x", "agent_type": "executor", "config": node_config}],
        "edges": [],
    }
