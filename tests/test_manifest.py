from __future__ import annotations

import copy
from types import MappingProxyType
from typing import Any

import pytest
from manifest_builders import minimal, node

from mncore._util import dumps, loads
from mncore.errors import ManifestError
from mncore.manifest import (
    AGENT_ALIASES,
    AGENT_TYPES,
    ALLOWED_TEMPLATES,
    TEMPLATES,
    allowed_templates,
    canonical_template,
    inbound_edges,
    load_manifest,
    node_map,
    normalize_manifest,
    outbound_edges,
    validate_manifest_dict,
)

# -- vocabulary --------------------------------------------------------------------------------


def test_vocabulary_matches_spec() -> None:
    assert frozenset({"router", "executor", "aggregator", "sensor", "module"}) == AGENT_TYPES
    assert dict(AGENT_ALIASES) == {"relay": "router", "sandbox_worker": "executor", "collector": "aggregator"}
    assert set(TEMPLATES) == {"generic", "stream", "map", "reduce", "batch", "accumulator"}
    assert TEMPLATES["accumulator"] == "reduce"
    everything = {"generic", "stream", "map", "reduce", "batch"}
    assert {key: set(value) for key, value in ALLOWED_TEMPLATES.items()} == {
        "router": {"generic", "map"},
        "executor": everything,
        "aggregator": {"generic", "reduce"},
        "sensor": {"generic"},
        "module": everything,
    }
    assert allowed_templates("step_source") == {"generic"}
    assert allowed_templates(None) == {"generic"}
    assert allowed_templates(["router"]) == {"generic"}


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, "generic"), ("", "generic"), (5, "generic"), ({"a": 1}, "generic"), ("accumulator", "reduce"),
     ("map", "map"), ("nope", "nope")],
)  # fmt: skip
def test_canonical_template(value: Any, expected: str) -> None:
    assert canonical_template(value) == expected


# -- normalisation -----------------------------------------------------------------------------


def test_minimal_manifest_gets_every_default() -> None:
    result = load_manifest(minimal())
    assert result == {
        "manifest_version": "1.0",
        "graph_id": "g",
        "job_name": "g",
        "daemon": False,
        "metadata": {},
        "nodes": [
            {
                "node_id": "a",
                "agent_type": "router",
                "type": "generic",
                "role": "root",
                "config": {},
                "tool_bindings": [],
                "retry_policy": {},
                "checkpoint_policy": {},
                "spawn_policy": {},
            }
        ],
        "edges": [],
        "entrypoints": ["a"],
        "initial_inputs": {},
        "policies": {"recovery_mode": "local_restart", "max_agent_restart_attempts": 3, "placement_policy": "local"},
        "reload": {"mode": "manual", "interval_seconds": 60},
    }


def test_job_name_kept_when_given_and_defaulted_when_null() -> None:
    assert normalize_manifest(minimal(job_name="Job"))["job_name"] == "Job"
    assert normalize_manifest(minimal(job_name=None))["job_name"] == "g"


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({}, False),
        ({"daemon": True}, True),
        ({"daemon": None}, False),
        ({"long_lived": True}, True),
        ({"long_lived": None}, False),
        ({"daemon": False, "long_lived": True}, False),
        ({"daemon": True, "long_lived": False}, True),
    ],
)
def test_daemon_default_and_long_lived_alias(extra: dict[str, Any], expected: bool) -> None:
    assert load_manifest(minimal(**extra))["daemon"] is expected


def test_long_lived_that_is_not_boolean_is_reported_as_daemon() -> None:
    assert validate_manifest_dict(minimal(long_lived="yes")) == ["daemon must be a boolean"]


def test_metadata_and_edges_defaults() -> None:
    result = normalize_manifest(minimal(metadata=None, edges=None))
    assert result["metadata"] == {}
    assert result["edges"] == []
    assert normalize_manifest(minimal(metadata={"run_id": "r"}))["metadata"] == {"run_id": "r"}


@pytest.mark.parametrize(
    ("value", "expected"),
    [("a", ["a"]), (["a", "b"], ["a", "b"]), ([], []), (5, []), ({"a": 1}, []), (True, [])],
)
def test_entrypoints_normalisation(value: Any, expected: list[str]) -> None:
    nodes = [node("a"), node("b")]
    assert normalize_manifest(minimal(nodes=nodes, entrypoints=value))["entrypoints"] == expected


def test_absent_entrypoints_are_root_nodes_in_manifest_order() -> None:
    nodes = [
        node("w", role="worker"),
        node("r2", role="root_coordinator"),
        node("x"),
        node("r1", role="root"),
        node(None, role="root"),  # no id: reported by validation, not an entrypoint
        node("odd", role=["root"]),
    ]
    assert normalize_manifest(minimal(nodes=nodes))["entrypoints"] == ["r2", "r1"]
    assert normalize_manifest(minimal(nodes=nodes, entrypoints=None))["entrypoints"] == ["r2", "r1"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"a": {"x": 1}}, {"a": [{"x": 1}]}),
        ({"a": [{"x": 1}, {"x": 2}]}, {"a": [{"x": 1}, {"x": 2}]}),
        ({"a": "text", "b": None}, {"a": ["text"], "b": [None]}),
        ([{"x": 1}], {"__entrypoints__": [{"x": 1}]}),
        (None, {}),
        ("text", {}),
        (7, {}),
    ],
)
def test_initial_inputs_normalisation(value: Any, expected: dict[str, Any]) -> None:
    assert normalize_manifest(minimal(initial_inputs=value))["initial_inputs"] == expected


def test_policies_keep_raw_keys_and_fill_effective_values() -> None:
    given = {"recovery_mode": "manual_recover", "restart": {"attempts": 9}, "max_agent_restart_attempts": None}
    result = load_manifest(minimal(policies=given))["policies"]
    assert result == {
        "recovery_mode": "manual_recover",
        "restart": {"attempts": 9},
        "max_agent_restart_attempts": 3,
        "placement_policy": "local",
    }
    assert (
        load_manifest(minimal(policies={"max_agent_restart_attempts": 0}))["policies"]["max_agent_restart_attempts"]
        == 0
    )


def test_reload_defaults_and_partial_values() -> None:
    assert normalize_manifest(minimal(reload=None))["reload"] == {"mode": "manual", "interval_seconds": 60}
    result = load_manifest(minimal(reload={"mode": "interval", "extra": 1}))["reload"]
    assert result == {"mode": "interval", "interval_seconds": 60, "extra": 1}
    assert load_manifest(minimal(reload={"interval_seconds": 5}))["reload"] == {"mode": "manual", "interval_seconds": 5}


@pytest.mark.parametrize(("alias", "canonical"), sorted(AGENT_ALIASES.items()))
def test_agent_type_aliases_resolved(alias: str, canonical: str) -> None:
    result = load_manifest(minimal(nodes=[node("a", alias, role="root")]))
    assert result["nodes"][0]["agent_type"] == canonical


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, "generic"), ("", "generic"), (3, "generic"), (["map"], "generic"), ("accumulator", "reduce"),
     ("reduce", "reduce"), ("stream", "stream")],
)  # fmt: skip
def test_node_type_canonicalised(value: Any, expected: str) -> None:
    result = load_manifest(minimal(nodes=[node("a", "executor", role="root", type=value)]))
    assert result["nodes"][0]["type"] == expected


def test_node_defaults_keep_given_values_and_unknown_keys() -> None:
    given = node(
        "a",
        "executor",
        role="root",
        config={"runner": "host"},
        tool_bindings=["t"],
        retry_policy=None,
        resources={"cpu_cores": 1},
        display_name="A",
    )
    result = load_manifest(minimal(nodes=[given]))["nodes"][0]
    assert result["config"] == {"runner": "host"}
    assert result["tool_bindings"] == ["t"]
    assert result["retry_policy"] == {}
    assert result["resources"] == {"cpu_cores": 1}
    assert result["display_name"] == "A"


def test_node_without_role_gets_null_role() -> None:
    result = load_manifest(minimal(nodes=[node("a")], entrypoints="a"))
    assert result["nodes"][0]["role"] is None


def test_edge_defaults_and_unknown_keys() -> None:
    nodes = [node("a", role="root"), node("b")]
    edges = [
        {"from_node": "a", "to_node": "b", "message_type": "x"},
        {"edge_id": "e2", "from_node": "b", "to_node": "a", "message_type": "*", "routing_mode": "first_match",
         "conditions": {"expr": "${payload.x} == 1"}, "note": "kept"},
    ]  # fmt: skip
    result = load_manifest(minimal(nodes=nodes, edges=edges))["edges"]
    assert result[0] == {
        "edge_id": None,
        "from_node": "a",
        "to_node": "b",
        "message_type": "x",
        "routing_mode": "broadcast",
        "conditions": {},
    }
    assert result[1]["routing_mode"] == "first_match"
    assert result[1]["conditions"] == {"expr": "${payload.x} == 1"}
    assert result[1]["note"] == "kept"


def test_unknown_top_level_keys_are_kept() -> None:
    result = load_manifest(minimal(schedule={"cron": "* * * * *"}, requirements={"x": 1}))
    assert result["schedule"] == {"cron": "* * * * *"}
    assert result["requirements"] == {"x": 1}


def test_normalisation_never_mutates_the_input() -> None:
    given = minimal(
        nodes=[node("a", "collector", role="root", type="accumulator", config={"k": [1, 2]})],
        edges=[{"from_node": "a", "to_node": "a", "message_type": "m"}],
        policies={"recovery_mode": "cluster_recover"},
        initial_inputs={"a": {"x": 1}},
    )
    snapshot = copy.deepcopy(given)
    result = load_manifest(given)
    assert given == snapshot
    result["nodes"][0]["config"]["k"].append(3)
    result["policies"]["new"] = 1
    assert given == snapshot


def test_normalisation_is_idempotent_and_json_safe() -> None:
    given = minimal(
        nodes=(node("a", "collector", role="root", type=None), MappingProxyType(node("b", "sandbox_worker"))),
        edges=[{"from_node": "a", "to_node": "b", "message_type": "m"}],
        initial_inputs=[{"x": 1}],
        long_lived=True,
    )
    once = load_manifest(given)
    assert normalize_manifest(once) == once
    assert load_manifest(once) == once
    assert loads(dumps(once)) == once
    assert isinstance(once["nodes"], list)
    assert type(once["nodes"][1]) is dict


def test_normalize_rejects_a_non_mapping() -> None:
    with pytest.raises(ManifestError) as info:
        normalize_manifest([1, 2])  # type: ignore[arg-type]
    assert info.value.errors == ["manifest must be a JSON object, got [1,2]"]


def test_outbound_and_inbound_edges_preserve_order() -> None:
    manifest = load_manifest(
        minimal(
            nodes=[node("a", role="root"), node("b"), node("c")],
            edges=[
                {"edge_id": "1", "from_node": "a", "to_node": "c", "message_type": "x"},
                {"edge_id": "2", "from_node": "b", "to_node": "c", "message_type": "y"},
                {"edge_id": "3", "from_node": "a", "to_node": "b", "message_type": "*"},
            ],
        )
    )
    outbound = outbound_edges(manifest)
    inbound = inbound_edges(manifest)
    assert list(outbound) == ["a", "b", "c"]
    assert [edge["edge_id"] for edge in outbound["a"]] == ["1", "3"]
    assert [edge["edge_id"] for edge in outbound["b"]] == ["2"]
    assert outbound["c"] == []
    assert inbound["a"] == []
    assert [edge["edge_id"] for edge in inbound["c"]] == ["1", "2"]
    assert [edge["edge_id"] for edge in inbound["b"]] == ["3"]
    assert list(node_map(manifest)) == ["a", "b", "c"]
    assert node_map(manifest)["b"]["agent_type"] == "router"
