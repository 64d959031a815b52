"""Manifest validation (manifest.md §12): every error string, order, odd input."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from manifest_builders import minimal, node

from mncore._util import dumps, loads
from mncore.errors import ManifestError, ValidationError
from mncore.manifest import (
    ALLOWED_TEMPLATES,
    load_manifest,
    normalize_manifest,
    validate_manifest_dict,
)

# -- validation: one test per spec error -------------------------------------------------------


@pytest.mark.parametrize(
    ("manifest", "expected"),
    [
        pytest.param(minimal(manifest_version=None), "manifest_version is required", id="1-version-null"),
        pytest.param({k: v for k, v in minimal().items() if k != "manifest_version"}, "manifest_version is required",
                     id="1-version-missing"),
        pytest.param(minimal(graph_id=None), "graph_id is required", id="2-graph-null"),
        pytest.param({k: v for k, v in minimal().items() if k != "graph_id"}, "graph_id is required",
                     id="2-graph-missing"),
        pytest.param(minimal(nodes=[node(None, role="root")]), "node_id is required for every node", id="4-missing"),
        pytest.param(minimal(nodes=[node("", role="root")]), "node_id is required for every node", id="4-empty"),
        pytest.param(minimal(nodes=[node("a", role="root"), node("a")]), "duplicate node_id a", id="5-duplicate"),
        pytest.param(minimal(nodes=[node("a", None, role="root")]), "unsupported agent_type nil for node a",
                     id="6-null"),
        pytest.param(minimal(nodes=[node("a", "wizard", role="root")]), 'unsupported agent_type "wizard" for node a',
                     id="6-unknown"),
        pytest.param(minimal(nodes=[node("a", "step_source", role="root")]),
                     'unsupported agent_type "step_source" for node a', id="6-later-type"),
        pytest.param(minimal(nodes=[node("a", 7, role="root")]), "unsupported agent_type 7 for node a",
                     id="6-number"),
        pytest.param(minimal(nodes=[node("a", role="root", type="nope")]),
                     'unsupported template type "nope" for node a', id="7"),
        pytest.param(minimal(nodes=[node("a", role="root", type="reduce")]),
                     'template type "reduce" is not supported for agent_type "router" on node a', id="8"),
        pytest.param(minimal(nodes=[node("a", "relay", role="root", type="accumulator")]),
                     'template type "reduce" is not supported for agent_type "router" on node a', id="8-aliases"),
        pytest.param(minimal(edges=[{"edge_id": "e1", "from_node": "x", "to_node": "a", "message_type": "m"}]),
                     "edge e1 references missing from_node x", id="9"),
        pytest.param(minimal(edges=[{"from_node": "a", "to_node": "y", "message_type": "m"}]),
                     "edge unknown references missing to_node y", id="10"),
        pytest.param(minimal(edges=[{"edge_id": "e1", "from_node": "a", "to_node": "a"}]),
                     "edge e1 must define message_type", id="11-missing"),
        pytest.param(minimal(edges=[{"edge_id": "e1", "from_node": "a", "to_node": "a", "message_type": ""}]),
                     "edge e1 must define message_type", id="11-empty"),
        pytest.param(minimal(nodes=[node("a")]),
                     "manifest must define at least one entrypoint or one node with role root/root_coordinator",
                     id="12"),
        pytest.param(minimal(entrypoints=["a", "zz"]), "entrypoint zz does not reference a known node", id="13"),
        pytest.param(minimal(daemon="yes"), "daemon must be a boolean", id="14"),
        pytest.param(minimal(policies={"recovery_mode": "bogus"}), 'unsupported recovery_mode "bogus"', id="15"),
        pytest.param(minimal(policies={"recovery_mode": "auto"}), 'unsupported recovery_mode "auto"',
                     id="15-auto-is-later"),
        pytest.param(minimal(nodes=[node("a", "executor", role="root", config={"runner": "k8s"})]),
                     'unsupported runner "k8s" for node a', id="16"),
        pytest.param(minimal(nodes=[node("a", "sandbox_worker", role="root", config={"runner": False})]),
                     "unsupported runner false for node a", id="16-alias-bool"),
        pytest.param(minimal(apiVersion="mn.workflow/v1"),
                     'apiVersion "mn.workflow/v1" is not supported by this runtime yet; '
                     "use the flat manifest_version 1.0 format", id="apiVersion"),
        pytest.param(minimal(apiVersion=None),
                     "apiVersion nil is not supported by this runtime yet; use the flat manifest_version 1.0 format",
                     id="apiVersion-null"),
    ],
)  # fmt: skip
def test_each_spec_error_exactly(manifest: dict[str, Any], expected: str) -> None:
    assert validate_manifest_dict(manifest) == [expected]
    with pytest.raises(ManifestError) as info:
        load_manifest(manifest)
    assert info.value.errors == [expected]
    assert isinstance(info.value, ValidationError)


def test_duplicate_reported_once_per_id_in_first_seen_order() -> None:
    nodes = [node("b", role="root"), node("a"), node("b"), node("a"), node("b")]
    assert validate_manifest_dict(minimal(nodes=nodes)) == ["duplicate node_id b", "duplicate node_id a"]


def test_all_errors_collected_in_spec_order() -> None:
    manifest = {
        "nodes": [
            node(None),  # 4
            node("a", "executor", config={"runner": "k8s"}),  # 16
            node("a"),  # 5
            node("b", "wizard"),  # 6
            node("c", type="nope"),  # 7
            node("d", "sensor", type="map"),  # 8
        ],
        "edges": [
            {"edge_id": "e1", "from_node": "x", "to_node": "a", "message_type": "m"},
            {"edge_id": "e2", "from_node": "y", "to_node": "z"},
        ],
        "entrypoints": ["a", "zz"],
        "daemon": "no",
        "policies": {"recovery_mode": "other"},
    }
    assert validate_manifest_dict(manifest) == [
        "manifest_version is required",
        "graph_id is required",
        "node_id is required for every node",
        "duplicate node_id a",
        'unsupported agent_type "wizard" for node b',
        'unsupported template type "nope" for node c',
        'template type "map" is not supported for agent_type "sensor" on node d',
        "edge e1 references missing from_node x",
        "edge e2 references missing from_node y",
        "edge e2 references missing to_node z",
        "edge e2 must define message_type",
        "entrypoint zz does not reference a known node",
        "daemon must be a boolean",
        'unsupported recovery_mode "other"',
        'unsupported runner "k8s" for node a',
    ]
    with pytest.raises(ManifestError) as info:
        load_manifest(manifest)
    assert len(info.value.errors) == 15
    assert str(info.value) == "; ".join(info.value.errors)


@pytest.mark.parametrize("nodes", [{"nodes": []}, {"nodes": None}, {}])
def test_nodes_empty_and_no_entrypoint_are_collected_together(nodes: dict[str, Any]) -> None:
    assert validate_manifest_dict(nodes) == [
        "manifest_version is required",
        "graph_id is required",
        "nodes must not be empty",
        "manifest must define at least one entrypoint or one node with role root/root_coordinator",
    ]


def test_node_without_id_is_labelled_by_index() -> None:
    nodes = [node("a", role="root"), node(None, "wizard", type="zzz")]
    assert validate_manifest_dict(minimal(nodes=nodes)) == [
        "node_id is required for every node",
        'unsupported agent_type "wizard" for node at index 1',
        'unsupported template type "zzz" for node at index 1',
    ]


def test_unknown_agent_type_allows_only_generic() -> None:
    errors = validate_manifest_dict(minimal(nodes=[node("a", "wizard", role="root", type="map")]))
    assert errors == [
        'unsupported agent_type "wizard" for node a',
        'template type "map" is not supported for agent_type "wizard" on node a',
    ]


@pytest.mark.parametrize("runner", ["host", "bwrap", "docker", "python", None])
def test_known_runners_and_absent_runner_are_valid(runner: str | None) -> None:
    nodes = [node("a", "executor", role="root", config={"runner": runner, "command": ["true"]})]
    assert validate_manifest_dict(minimal(nodes=nodes)) == []


def test_runner_is_only_checked_for_executors() -> None:
    assert validate_manifest_dict(minimal(nodes=[node("a", role="root", config={"runner": "k8s"})])) == []


@pytest.mark.parametrize(
    ("agent_type", "template"),
    [(agent_type, template) for agent_type, allowed in ALLOWED_TEMPLATES.items() for template in sorted(allowed)],
)
def test_every_allowed_template_validates(agent_type: str, template: str) -> None:
    nodes = [node("a", agent_type, role="root", type=template, config={"module": "x.Y"})]
    assert validate_manifest_dict(minimal(nodes=nodes)) == []


def test_explicit_empty_entrypoints_with_root_node_is_valid() -> None:
    # spec §12 #12 fires only without entrypoints *and* without a root node; explicit [] is kept
    result = load_manifest(minimal(entrypoints=[]))
    assert result["entrypoints"] == []


def test_entrypoints_of_other_types_render_with_inspect() -> None:
    assert validate_manifest_dict(minimal(entrypoints=["a", 5, ""])) == [
        "entrypoint 5 does not reference a known node",
        'entrypoint "" does not reference a known node',
    ]


def test_edge_placeholders_render_non_strings_with_inspect() -> None:
    edges = [{"edge_id": 3, "to_node": "a", "message_type": 9}]
    assert validate_manifest_dict(minimal(edges=edges)) == [
        "edge 3 references missing from_node nil",
        "edge 3 must define message_type",
    ]


def test_valid_graph_with_edges_and_policies() -> None:
    manifest = minimal(
        nodes=[node("a", role="root"), node("b", "executor", config={"runner": "host"}), node("c", "aggregator")],
        edges=[
            {"edge_id": "ab", "from_node": "a", "to_node": "b", "message_type": "*"},
            {"edge_id": "bc", "from_node": "b", "to_node": "c", "message_type": "executor_result"},
        ],
        policies={"recovery_mode": "cluster_recover", "max_agent_restart_attempts": 5},
        daemon=True,
        reload={"mode": "interval", "interval_seconds": 0.5},
    )
    assert validate_manifest_dict(manifest) == []


# -- validation: odd but well-formed input (our errors) ----------------------------------------


@pytest.mark.parametrize(
    ("manifest", "expected"),
    [
        pytest.param(minimal(graph_id=5), ["graph_id must be a string, got 5"], id="graph-id-number"),
        pytest.param(minimal(graph_id=""), ["graph_id is required"], id="graph-id-empty"),
        pytest.param(minimal(graph_id="../x"),
                     ['graph_id "../x" must not contain "/", "\\" or NUL; use letters, digits, "-" or "_"'],
                     id="graph-id-slash"),
        pytest.param(minimal(nodes={"a": {}}),
                     ['nodes must be a list of node objects, got {"a":{}}',
                      "manifest must define at least one entrypoint or one node with role root/root_coordinator"],
                     id="nodes-mapping"),
        pytest.param(minimal(nodes="a"),
                     ['nodes must be a list of node objects, got "a"',
                      "manifest must define at least one entrypoint or one node with role root/root_coordinator"],
                     id="nodes-string"),
        pytest.param(minimal(nodes=[node("a", role="root"), "b", None]),
                     ['node at index 1 must be an object, got "b"', "node at index 2 must be an object, got nil"],
                     id="node-not-object"),
        pytest.param(minimal(nodes=[node("a", role="root"), {"node_id": 7, "agent_type": "router"}]),
                     ["node_id must be a string, got 7 (node at index 1)"], id="node-id-number"),
        pytest.param(minimal(nodes=[node("a", role="root"), {"node_id": ["x"], "agent_type": "router"}]),
                     ['node_id must be a string, got ["x"] (node at index 1)'], id="node-id-list"),
        pytest.param(minimal(nodes=[node("a", ["router"], role="root")]),
                     ['unsupported agent_type ["router"] for node a'], id="agent-type-list"),
        pytest.param(minimal(nodes=[node("a", {"t": 1}, role="root")]),
                     ['unsupported agent_type {"t":1} for node a'], id="agent-type-mapping"),
        pytest.param(minimal(edges={"e": 1}), ['edges must be a list of edge objects, got {"e":1}'],
                     id="edges-mapping"),
        pytest.param(minimal(edges=[["a", "b"]]), ['edge at index 0 must be an object, got ["a","b"]'],
                     id="edge-not-object"),
        pytest.param(minimal(edges=[{"from_node": ["a"], "to_node": {"b": 1}, "message_type": "m"}]),
                     ['edge unknown references missing from_node ["a"]',
                      'edge unknown references missing to_node {"b":1}'], id="edge-ends-odd"),
        pytest.param(minimal(nodes=[node("a", role="root", config="x")]),
                     ['config for node a must be an object, got "x"'], id="config-string"),
        pytest.param(minimal(nodes=[node("a", "executor", role="root", config=["runner"])]),
                     ['config for node a must be an object, got ["runner"]'], id="executor-config-list"),
        pytest.param(minimal(nodes=[node("a", role="root", tool_bindings={}, spawn_policy=[])]),
                     ["spawn_policy for node a must be an object, got []",
                      "tool_bindings for node a must be a list, got {}"], id="node-containers"),
        pytest.param(minimal(nodes=[node("a", role=["root"])], entrypoints=None),
                     ["manifest must define at least one entrypoint or one node with role root/root_coordinator"],
                     id="role-list"),
        pytest.param(minimal(policies=["x"]), ['policies must be an object, got ["x"]'], id="policies-list"),
        pytest.param(minimal(policies={"max_agent_restart_attempts": "3"}),
                     ['policies.max_agent_restart_attempts must be a non-negative integer, got "3"'],
                     id="restart-attempts-string"),
        pytest.param(minimal(policies={"max_agent_restart_attempts": -1}),
                     ["policies.max_agent_restart_attempts must be a non-negative integer, got -1"],
                     id="restart-attempts-negative"),
        pytest.param(minimal(policies={"max_agent_restart_attempts": True}),
                     ["policies.max_agent_restart_attempts must be a non-negative integer, got true"],
                     id="restart-attempts-bool"),
        pytest.param(minimal(policies={"recovery_mode": ["x"]}), ['unsupported recovery_mode ["x"]'],
                     id="recovery-mode-list"),
        pytest.param(minimal(metadata="m"), ['metadata must be an object, got "m"'], id="metadata-string"),
        pytest.param(minimal(reload="interval"),
                     ['reload must be an object like {"mode": "manual"}, got "interval"'], id="reload-string"),
        pytest.param(minimal(reload={"mode": "auto", "interval_seconds": "5"}),
                     ['reload.mode must be "manual" or "interval", got "auto"',
                      'reload.interval_seconds must be a positive number, got "5"'], id="reload-values"),
        pytest.param(minimal(reload={"interval_seconds": 0}),
                     ["reload.interval_seconds must be a positive number, got 0"], id="reload-zero"),
    ],
)  # fmt: skip
def test_odd_input_gets_clear_errors(manifest: dict[str, Any], expected: list[str]) -> None:
    assert validate_manifest_dict(manifest) == expected


@pytest.mark.parametrize("value", [None, [], "text", 5, [{"manifest_version": "1.0"}]])
def test_non_mapping_manifest(value: Any) -> None:
    errors = validate_manifest_dict(value)
    assert len(errors) == 1
    assert errors[0].startswith("manifest must be a JSON object, got ")
    with pytest.raises(ManifestError):
        load_manifest(value)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=8,
)
_keys = st.sampled_from(
    ["node_id", "agent_type", "type", "role", "config", "tool_bindings", "retry_policy", "from_node", "to_node",
     "message_type", "edge_id", "routing_mode", "conditions"]
)  # fmt: skip
_top_keys = st.sampled_from(
    ["manifest_version", "graph_id", "job_name", "daemon", "long_lived", "metadata", "nodes", "edges", "entrypoints",
     "initial_inputs", "policies", "reload"]
)  # fmt: skip
_items = st.one_of(_json, st.dictionaries(_keys, _json | st.sampled_from(["a", "b", "executor", "map"]), max_size=6))


@settings(max_examples=300, database=None, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    top=st.dictionaries(_top_keys, _json, max_size=6),
    nodes=st.lists(_items, max_size=4),
    edges=st.lists(_items, max_size=3),
    policies=st.dictionaries(st.sampled_from(["recovery_mode", "max_agent_restart_attempts"]), _json),
)
def test_any_json_input_gives_strings_never_exceptions(
    top: dict[str, Any], nodes: list[Any], edges: list[Any], policies: dict[str, Any]
) -> None:
    for manifest in (top, {**top, "nodes": nodes, "edges": edges, "policies": policies}):
        errors = validate_manifest_dict(manifest)
        assert all(isinstance(error, str) for error in errors)
        try:
            result = load_manifest(manifest)
        except ManifestError as exc:
            assert exc.errors == errors
        else:
            assert errors == []
            assert loads(dumps(result)) == result
            assert normalize_manifest(result) == result


# -- graph helpers -----------------------------------------------------------------------------


def test_values_orjson_cannot_store_are_reported_not_raised() -> None:
    huge = 2**70
    assert validate_manifest_dict(minimal(metadata={"n": huge})) == [
        "manifest must hold only JSON values (objects, lists, strings, numbers, booleans, null): "
        "Integer exceeds 64-bit range"
    ]
    errors = validate_manifest_dict(minimal(policies={"recovery_mode": [huge]}))
    assert errors[0] == f"unsupported recovery_mode [{huge}]"
    assert len(errors) == 2
