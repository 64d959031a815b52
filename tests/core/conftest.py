"""Fixtures for engine tests: a Runtime on a real SQLite store in a temp data dir, fast timers."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from mncore.config import Settings
from mncore.runtime import Runtime

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings.from_env(
        {},
        data_dir=str(tmp_path / "data"),
        home=str(tmp_path / "home"),
        temp_dir=str(tmp_path / "work"),
        node_name="mn@test",
        default_runner="host",
        execution_mode="inline",
        job_health_check_interval_ms=100,
        agent_heartbeat_interval_ms=200,
    )


@pytest.fixture
async def runtime(settings: Settings) -> AsyncIterator[Runtime]:
    async with Runtime(settings) as rt:
        yield rt


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
