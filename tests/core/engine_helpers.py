"""Manifest builders shared by the engine tests."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def chain_manifest(
    n_routers: int = 3, inputs: list[Any] | None = None, complete_after: int | None = None
) -> dict[str, Any]:
    """ingress -> r1 -> ... -> collect (aggregator)."""
    inputs = inputs if inputs is not None else [{"n": i} for i in range(3)]
    nodes: list[dict[str, Any]] = [{"node_id": "r0", "agent_type": "router", "role": "root"}]
    edges = []
    for i in range(1, n_routers):
        nodes.append({"node_id": f"r{i}", "agent_type": "router"})
        edges.append({"edge_id": f"e{i}", "from_node": f"r{i - 1}", "to_node": f"r{i}", "message_type": "*"})
    nodes.append(
        {"node_id": "collect", "agent_type": "aggregator", "config": {"complete_after": complete_after or len(inputs)}}
    )
    edges.append({"from_node": f"r{n_routers - 1}", "to_node": "collect", "message_type": "*"})
    return {
        "manifest_version": "1.0",
        "graph_id": "chain",
        "nodes": nodes,
        "edges": edges,
        "initial_inputs": {"r0": inputs},
    }


def module_manifest(module: str, extra_nodes: list[dict[str, Any]] | None = None, **config: Any) -> dict[str, Any]:
    return {
        "manifest_version": "1.0",
        "graph_id": "mod",
        "entrypoints": ["m"],
        "nodes": [
            {"node_id": "m", "agent_type": "module", "config": {"module": module, **config}},
            *copy.deepcopy(extra_nodes or []),
        ],
        "edges": [],
    }


def types(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]
