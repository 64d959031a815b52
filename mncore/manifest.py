"""Flat ``manifest_version`` 1.0 manifests: normalisation, validation, and graph helpers.

:func:`load_manifest` = :func:`normalize_manifest` (spec manifest.md §3-§8) followed by
:func:`validate_manifest_dict` (§12). The result is a plain JSON-safe ``dict``: it is stored in
job records and re-serialised, so the typed views below (:class:`NodeDict`, :class:`EdgeDict`,
:class:`ManifestDict`) only describe its shape. Unknown keys are kept everywhere.

Rules we chose where the spec is silent:

- A JSON ``null`` for an optional field means "absent" and gets the default (``daemon``,
  ``long_lived``, ``policies.*``, ``reload.*``, node and edge fields), as the spec states for ``type``.
- A field with the wrong container type is kept as given by normalisation and reported by
  validation (never silently replaced), so the user sees what to fix.
- ``policies`` keeps every given key; ``recovery_mode``, ``max_agent_restart_attempts`` and
  ``placement_policy`` are filled in when absent, so the runtime reads the effective values there.
- A manifest with an ``apiVersion`` key is rejected with that one error only (§2): the flat checks
  would only add noise for a ``flow.*`` or ``agents``/``workflow`` manifest.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, TypedDict

from ._validation import (
    AGENT_ALIASES,
    AGENT_TYPES,
    ALLOWED_TEMPLATES,
    API_VERSION_ERROR,
    RECOVERY_MODES,
    ROOT_ROLES,
    RUNNERS,
    TEMPLATE_TYPES,
    TEMPLATES,
    allowed_templates,
    collect_errors,
    inspect,
)
from .errors import ManifestError

__all__ = [
    "AGENT_ALIASES",
    "AGENT_TYPES",
    "ALLOWED_TEMPLATES",
    "DEFAULT_POLICIES",
    "DEFAULT_RELOAD",
    "RECOVERY_MODES",
    "RUNNERS",
    "TEMPLATES",
    "TEMPLATE_TYPES",
    "EdgeDict",
    "ManifestDict",
    "NodeDict",
    "allowed_templates",
    "canonical_template",
    "inbound_edges",
    "load_manifest",
    "node_map",
    "normalize_manifest",
    "outbound_edges",
    "validate_manifest_dict",
]

DEFAULT_POLICIES: Mapping[str, Any] = MappingProxyType(
    {"recovery_mode": "local_restart", "max_agent_restart_attempts": 3, "placement_policy": "local"}
)
DEFAULT_RELOAD: Mapping[str, Any] = MappingProxyType({"mode": "manual", "interval_seconds": 60})
_NODE_DEFAULTS: tuple[tuple[str, type], ...] = (
    ("config", dict),
    ("tool_bindings", list),
    ("retry_policy", dict),
    ("checkpoint_policy", dict),
    ("spawn_policy", dict),
)


class NodeDict(TypedDict):
    """A normalised node (unknown keys are kept too)."""

    node_id: str
    agent_type: str
    type: str
    role: str | None
    config: dict[str, Any]
    tool_bindings: list[Any]
    retry_policy: dict[str, Any]
    checkpoint_policy: dict[str, Any]
    spawn_policy: dict[str, Any]


class EdgeDict(TypedDict):
    """A normalised edge (unknown keys are kept too)."""

    edge_id: str | None
    from_node: str
    to_node: str
    message_type: str
    routing_mode: str
    conditions: dict[str, Any]


class ManifestDict(TypedDict):
    """A normalised, valid manifest (unknown top-level keys are kept too)."""

    manifest_version: Any
    graph_id: str
    job_name: Any
    daemon: bool
    metadata: dict[str, Any]
    nodes: list[NodeDict]
    edges: list[EdgeDict]
    entrypoints: list[str]
    initial_inputs: dict[str, list[Any]]
    policies: dict[str, Any]
    reload: dict[str, Any]


def _plain(value: Any) -> Any:
    """Deep copy into plain containers (mappings -> dict, tuples -> list); leaves are shared."""
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def _not_an_object(raw: Any) -> ManifestError:
    return ManifestError([f"manifest must be a JSON object, got {inspect(raw)}"])


def canonical_template(value: Any) -> str:
    """Node ``type``: null, ``""`` or a non-string -> ``generic``; aliases resolved; unknown kept."""
    if not isinstance(value, str) or not value:
        return "generic"
    return TEMPLATES.get(value, value)


def normalize_manifest(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Apply every default and alias of spec §3-§8 to a copy of ``raw`` (never mutated)."""
    if not isinstance(raw, Mapping):
        raise _not_an_object(raw)
    manifest: dict[str, Any] = _plain(raw)
    if manifest.get("job_name") is None:
        manifest["job_name"] = manifest.get("graph_id")
    if manifest.get("daemon") is None:
        long_lived = manifest.get("long_lived")  # [compat] alias when daemon is absent
        manifest["daemon"] = False if long_lived is None else long_lived
    if manifest.get("metadata") is None:
        manifest["metadata"] = {}
    nodes = manifest.get("nodes")
    if isinstance(nodes, list):
        manifest["nodes"] = [_normalize_node(node) if isinstance(node, dict) else node for node in nodes]
    elif nodes is None:
        manifest["nodes"] = []
    edges = manifest.get("edges")
    if isinstance(edges, list):
        manifest["edges"] = [_normalize_edge(edge) if isinstance(edge, dict) else edge for edge in edges]
    elif edges is None:
        manifest["edges"] = []
    manifest["entrypoints"] = _normalize_entrypoints(manifest.get("entrypoints"), manifest["nodes"])
    manifest["initial_inputs"] = _normalize_initial_inputs(manifest.get("initial_inputs"))
    manifest["policies"] = _with_defaults(manifest.get("policies"), DEFAULT_POLICIES)
    manifest["reload"] = _with_defaults(manifest.get("reload"), DEFAULT_RELOAD)
    return manifest


def _with_defaults(value: Any, defaults: Mapping[str, Any]) -> Any:
    """A mapping with null/absent keys defaulted; null -> the defaults; anything else kept for validation."""
    if value is None:
        return dict(defaults)
    if not isinstance(value, dict):
        return value
    for key, default in defaults.items():
        if value.get(key) is None:
            value[key] = default
    return value


def _normalize_node(node: dict[str, Any]) -> dict[str, Any]:
    node.setdefault("node_id", None)
    agent_type = node.get("agent_type")
    node["agent_type"] = AGENT_ALIASES.get(agent_type, agent_type) if isinstance(agent_type, str) else agent_type
    node["type"] = canonical_template(node.get("type"))
    node.setdefault("role", None)
    for key, factory in _NODE_DEFAULTS:
        if node.get(key) is None:
            node[key] = factory()
    return node


def _normalize_edge(edge: dict[str, Any]) -> dict[str, Any]:
    for key in ("edge_id", "from_node", "to_node", "message_type"):
        edge.setdefault(key, None)
    if edge.get("routing_mode") is None:
        edge["routing_mode"] = "broadcast"
    if edge.get("conditions") is None:
        edge["conditions"] = {}
    return edge


def _normalize_entrypoints(value: Any, nodes: Any) -> list[Any]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return value
    if value is None and isinstance(nodes, list):
        return [
            node["node_id"]
            for node in nodes
            if isinstance(node, dict)
            and isinstance(node.get("role"), str)
            and node["role"] in ROOT_ROLES
            and isinstance(node.get("node_id"), str)
            and node["node_id"]
        ]
    return []


def _normalize_initial_inputs(value: Any) -> dict[Any, list[Any]]:
    if isinstance(value, dict):
        return {key: item if isinstance(item, list) else [item] for key, item in value.items()}
    if isinstance(value, list):
        return {"__entrypoints__": value}
    return {}


def validate_manifest_dict(manifest: Mapping[str, Any]) -> list[str]:
    """Every validation error (spec §12 order, exact strings); ``[]`` when valid.

    The input is normalised first (normalisation is idempotent), so raw and normalised
    manifests give the same answer. Never raises for a mapping.
    """
    if not isinstance(manifest, Mapping):
        return list(_not_an_object(manifest).errors)
    if "apiVersion" in manifest:
        return [API_VERSION_ERROR.format(inspect(manifest["apiVersion"]))]
    return collect_errors(normalize_manifest(manifest))


def load_manifest(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Normalise and validate; raises :class:`ManifestError` carrying every error."""
    if not isinstance(raw, Mapping):
        raise _not_an_object(raw)
    if "apiVersion" in raw:
        raise ManifestError([API_VERSION_ERROR.format(inspect(raw["apiVersion"]))])
    manifest = normalize_manifest(raw)
    errors = collect_errors(manifest)
    if errors:
        raise ManifestError(errors)
    return manifest


def node_map(manifest: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``{node_id: node}`` in manifest order."""
    return {
        node["node_id"]: node
        for node in manifest.get("nodes") or ()
        if isinstance(node, dict) and isinstance(node.get("node_id"), str)
    }


def _edges_by(manifest: Mapping[str, Any], key: str) -> dict[str, list[dict[str, Any]]]:
    result: dict[str, list[dict[str, Any]]] = {node_id: [] for node_id in node_map(manifest)}
    for edge in manifest.get("edges") or ():
        if isinstance(edge, dict) and isinstance(edge.get(key), str):
            result.setdefault(edge[key], []).append(edge)
    return result


def outbound_edges(manifest: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """``{node_id: [edges from it]}``; every node has an entry; edges in manifest order."""
    return _edges_by(manifest, "from_node")


def inbound_edges(manifest: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """``{node_id: [edges to it]}``; every node has an entry; edges in manifest order."""
    return _edges_by(manifest, "to_node")
