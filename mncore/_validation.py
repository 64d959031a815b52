"""Manifest vocabulary and the validation checks of spec manifest.md §12.

The public face is :mod:`mncore.manifest`; this module holds what "valid" means: the agent types,
template registry, allowed templates, recovery modes and runners, and :func:`collect_errors`, which
checks an already *normalised* manifest and returns every error in the spec's order.

Order: the spec's table order, category by category (all #4 errors, then all #5, ...), each
category in manifest order. Errors marked "ours" are not in the spec; they cover odd but
well-formed input (wrong container types) so that nothing downstream raises TypeError/KeyError.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from ._util import dumps, inspect

__all__ = [
    "AGENT_ALIASES",
    "AGENT_TYPES",
    "ALLOWED_TEMPLATES",
    "API_VERSION_ERROR",
    "RECOVERY_MODES",
    "ROOT_ROLES",
    "RUNNERS",
    "TEMPLATES",
    "TEMPLATE_TYPES",
    "allowed_templates",
    "collect_errors",
    "inspect",
]

AGENT_TYPES: frozenset[str] = frozenset({"router", "executor", "aggregator", "sensor", "module"})
AGENT_ALIASES: Mapping[str, str] = MappingProxyType(
    {"relay": "router", "sandbox_worker": "executor", "collector": "aggregator"}
)
#: template name (or alias) -> canonical template name
TEMPLATES: Mapping[str, str] = MappingProxyType(
    {
        "generic": "generic",
        "stream": "stream",
        "map": "map",
        "reduce": "reduce",
        "batch": "batch",
        "accumulator": "reduce",
    }
)
TEMPLATE_TYPES: frozenset[str] = frozenset(TEMPLATES.values())
_ALL_TEMPLATES = frozenset({"generic", "stream", "map", "reduce", "batch"})
ALLOWED_TEMPLATES: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "router": frozenset({"generic", "map"}),
        "executor": _ALL_TEMPLATES,
        "aggregator": frozenset({"generic", "reduce"}),
        "sensor": frozenset({"generic"}),
        "module": _ALL_TEMPLATES,
    }
)
_GENERIC_ONLY = frozenset({"generic"})
ROOT_ROLES: frozenset[str] = frozenset({"root", "root_coordinator"})
RECOVERY_MODES: frozenset[str] = frozenset({"local_restart", "cluster_recover", "manual_recover"})
RUNNERS: frozenset[str] = frozenset({"host", "bwrap", "docker", "python"})
RELOAD_MODES: frozenset[str] = frozenset({"manual", "interval"})

API_VERSION_ERROR = "apiVersion {} is not supported by this runtime yet; use the flat manifest_version 1.0 format"
_NODE_MAPPINGS = ("config", "retry_policy", "checkpoint_policy", "spawn_policy")


def allowed_templates(agent_type: Any) -> frozenset[str]:
    """Templates a node of ``agent_type`` may declare (spec §10; any other type: generic only)."""
    return ALLOWED_TEMPLATES.get(agent_type, _GENERIC_ONLY) if isinstance(agent_type, str) else _GENERIC_ONLY


def show(value: Any) -> str:
    """A ``<id>``/``<x>`` placeholder: non-empty strings verbatim, anything else as ``inspect``."""
    return value if isinstance(value, str) and value else inspect(value)


def _node_label(node: Mapping[str, Any], index: int) -> str:
    node_id = node.get("node_id")
    return node_id if isinstance(node_id, str) and node_id else f"at index {index}"


def _edge_label(edge: Mapping[str, Any]) -> str:
    edge_id = edge.get("edge_id")
    return "unknown" if edge_id is None else show(edge_id)


def collect_errors(manifest: Mapping[str, Any]) -> list[str]:
    """Every validation error of a normalised manifest, in spec order (see the module docstring)."""
    errors: list[str] = []
    if manifest.get("manifest_version") is None:
        errors.append("manifest_version is required")
    errors.extend(_graph_id_errors(manifest.get("graph_id")))
    nodes = _indexed_mappings(manifest.get("nodes"), "nodes", "node", errors)
    node_ids = _node_id_errors(nodes, errors)
    _node_kind_errors(nodes, errors)
    _edge_errors(manifest.get("edges"), node_ids, errors)
    _entrypoint_errors(manifest, nodes, node_ids, errors)
    if not isinstance(manifest.get("daemon"), bool):
        errors.append("daemon must be a boolean")
    _policy_errors(manifest.get("policies"), errors)
    _runner_errors(nodes, errors)
    _top_level_type_errors(manifest, errors)
    try:  # ours: the manifest is stored and re-serialised
        dumps(manifest)
    except TypeError as exc:
        errors.append(f"manifest must hold only JSON values (objects, lists, strings, numbers, booleans, null): {exc}")
    return errors


def _graph_id_errors(graph_id: Any) -> list[str]:
    if graph_id is None or graph_id == "":
        return ["graph_id is required"]
    if not isinstance(graph_id, str):  # ours: it becomes part of the job id and folder names
        return [f"graph_id must be a string, got {inspect(graph_id)}"]
    if any(ch in graph_id for ch in "/\\\x00"):  # ours: job ids name folders under bundles/
        return [f'graph_id {inspect(graph_id)} must not contain "/", "\\" or NUL; use letters, digits, "-" or "_"']
    return []


def _indexed_mappings(items: Any, field: str, noun: str, errors: list[str]) -> list[tuple[int, Mapping[str, Any]]]:
    """(index, item) for the mapping items of a list field; type problems become errors (ours)."""
    if items is None or (isinstance(items, list) and not items):
        if field == "nodes":
            errors.append("nodes must not be empty")
        return []
    if not isinstance(items, list):
        errors.append(f"{field} must be a list of {noun} objects, got {inspect(items)}")
        return []
    result: list[tuple[int, Mapping[str, Any]]] = []
    for index, item in enumerate(items):
        if isinstance(item, Mapping):
            result.append((index, item))
        else:
            errors.append(f"{noun} at index {index} must be an object, got {inspect(item)}")
    return result


def _node_id_errors(nodes: list[tuple[int, Mapping[str, Any]]], errors: list[str]) -> set[str]:
    ids: list[str] = []
    for index, node in nodes:
        node_id = node.get("node_id")
        if node_id is None or node_id == "":
            errors.append("node_id is required for every node")
        elif not isinstance(node_id, str):  # ours: ids key agents, snapshots and store records
            errors.append(f"node_id must be a string, got {inspect(node_id)} (node at index {index})")
        else:
            ids.append(node_id)
    counts = Counter(ids)
    errors.extend(f"duplicate node_id {node_id}" for node_id, n in counts.items() if n > 1)
    return set(ids)


def _node_kind_errors(nodes: list[tuple[int, Mapping[str, Any]]], errors: list[str]) -> None:
    """#6 agent types, #7 unknown templates, #8 templates not allowed; then node field types (ours)."""
    labelled = [(_node_label(node, index), node) for index, node in nodes]
    for label, node in labelled:
        agent_type = node.get("agent_type")
        if not (isinstance(agent_type, str) and agent_type in AGENT_TYPES):
            errors.append(f"unsupported agent_type {inspect(agent_type)} for node {label}")
    for label, node in labelled:
        template = node.get("type")
        if not (isinstance(template, str) and template in TEMPLATE_TYPES):
            errors.append(f"unsupported template type {inspect(template)} for node {label}")
    for label, node in labelled:
        template, agent_type = node.get("type"), node.get("agent_type")
        if isinstance(template, str) and template in TEMPLATE_TYPES and template not in allowed_templates(agent_type):
            shown = f"{inspect(template)} is not supported for agent_type {inspect(agent_type)}"
            errors.append(f"template type {shown} on node {label}")
    for label, node in labelled:  # ours
        for key in _NODE_MAPPINGS:
            if key in node and not isinstance(node[key], Mapping):
                errors.append(f"{key} for node {label} must be an object, got {inspect(node[key])}")
        if "tool_bindings" in node and not isinstance(node["tool_bindings"], list):
            errors.append(f"tool_bindings for node {label} must be a list, got {inspect(node['tool_bindings'])}")


def _edge_errors(raw_edges: Any, node_ids: set[str], errors: list[str]) -> None:
    if raw_edges is None:
        return
    edges = [edge for _, edge in _indexed_mappings(raw_edges, "edges", "edge", errors)]
    for edge in edges:
        if not _names_node(edge.get("from_node"), node_ids):
            errors.append(f"edge {_edge_label(edge)} references missing from_node {show(edge.get('from_node'))}")
    for edge in edges:
        if not _names_node(edge.get("to_node"), node_ids):
            errors.append(f"edge {_edge_label(edge)} references missing to_node {show(edge.get('to_node'))}")
    for edge in edges:
        message_type = edge.get("message_type")
        if not (isinstance(message_type, str) and message_type):
            errors.append(f"edge {_edge_label(edge)} must define message_type")


def _names_node(value: Any, node_ids: set[str]) -> bool:
    return isinstance(value, str) and value in node_ids


def _entrypoint_errors(
    manifest: Mapping[str, Any], nodes: list[tuple[int, Mapping[str, Any]]], node_ids: set[str], errors: list[str]
) -> None:
    entrypoints = manifest.get("entrypoints")
    entrypoints = entrypoints if isinstance(entrypoints, list) else []
    has_root = any(isinstance(node.get("role"), str) and node["role"] in ROOT_ROLES for _, node in nodes)
    if not entrypoints and not has_root:
        errors.append("manifest must define at least one entrypoint or one node with role root/root_coordinator")
    errors.extend(
        f"entrypoint {show(entry)} does not reference a known node"
        for entry in entrypoints
        if not _names_node(entry, node_ids)
    )


def _policy_errors(policies: Any, errors: list[str]) -> None:
    if policies is None:
        return
    if not isinstance(policies, Mapping):  # ours, in place of #15
        errors.append(f"policies must be an object, got {inspect(policies)}")
        return
    mode = policies.get("recovery_mode", "local_restart")
    if not (isinstance(mode, str) and mode in RECOVERY_MODES):
        errors.append(f"unsupported recovery_mode {inspect(mode)}")
    attempts = policies.get("max_agent_restart_attempts", 3)
    if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 0:  # ours
        errors.append(f"policies.max_agent_restart_attempts must be a non-negative integer, got {inspect(attempts)}")


def _runner_errors(nodes: list[tuple[int, Mapping[str, Any]]], errors: list[str]) -> None:
    for index, node in nodes:
        config = node.get("config")
        if node.get("agent_type") != "executor" or not isinstance(config, Mapping):
            continue
        runner = config.get("runner")
        if runner is not None and not (isinstance(runner, str) and runner in RUNNERS):
            errors.append(f"unsupported runner {inspect(runner)} for node {_node_label(node, index)}")


def _top_level_type_errors(manifest: Mapping[str, Any], errors: list[str]) -> None:
    """Ours: containers the runtime reads must have the right shape."""
    metadata = manifest.get("metadata")
    if metadata is not None and not isinstance(metadata, Mapping):
        errors.append(f"metadata must be an object, got {inspect(metadata)}")
    reload = manifest.get("reload")
    if reload is None:
        return
    if not isinstance(reload, Mapping):
        errors.append(f'reload must be an object like {{"mode": "manual"}}, got {inspect(reload)}')
        return
    mode = reload.get("mode", "manual")
    if not (isinstance(mode, str) and mode in RELOAD_MODES):
        errors.append(f'reload.mode must be "manual" or "interval", got {inspect(mode)}')
    interval = reload.get("interval_seconds", 60)
    if isinstance(interval, bool) or not isinstance(interval, (int, float)) or not interval > 0:
        errors.append(f"reload.interval_seconds must be a positive number, got {inspect(interval)}")
