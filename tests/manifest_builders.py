"""Manifest builders shared by the manifest and validation tests."""

from __future__ import annotations

from typing import Any


def minimal(**overrides: Any) -> dict[str, Any]:
    manifest: dict[str, Any] = {
        "manifest_version": "1.0",
        "graph_id": "g",
        "nodes": [{"node_id": "a", "agent_type": "router", "role": "root"}],
    }
    manifest.update(overrides)
    return manifest


def node(node_id: str | None = "a", agent_type: Any = "router", **extra: Any) -> dict[str, Any]:
    result: dict[str, Any] = {"agent_type": agent_type, **extra}
    if node_id is not None:
        result["node_id"] = node_id
    return result
