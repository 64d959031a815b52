"""Job lifecycle end to end on the embedded store: bootstrap, completion, failure, control."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from engine_helpers import EXAMPLES, chain_manifest, module_manifest, types

from mncore.errors import AgentNotFound, JobNotFound, ManifestError, StateError, WaitTimeoutError
from mncore.runtime import Runtime

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


async def test_router_chain_example_completes(runtime: Runtime) -> None:
    job_id, record = await runtime.run_manifest(str(EXAMPLES / "router-chain"), wait=True, timeout=10)
    assert re.fullmatch(r"router_chain-\d{13}-[0-9a-f]{12}", job_id)
    assert record["status"] == "completed"
    output = record["result"]["output"]
    assert record["result"]["agent_id"] == "collect"
    assert output["count"] == 4
    assert [m["reading"] for m in output["messages"]] == [1, 2, 3, 5]
    assert ISO.match(record["submitted_at"]) and ISO.match(record["updated_at"])
    assert record["manifest_ref"]["job_path"] == str(EXAMPLES / "router-chain")
    events = await runtime.events(job_id)
    t = types(events)
    assert t[:4] == ["job_pending", "job_validated", "job_scheduled", "job_running"]
    assert t[-1] == "job_completed"
    assert events[2]["node"] == "mn@test"
    completed = events[-1]
    assert completed["agent_id"] == "collect" and completed["result"] == record["result"]
    assert t.count("agent_message_received") == 4 * 5
    assert all(ISO.match(e["timestamp"]) for e in events)


async def test_record_and_snapshot_shapes(runtime: Runtime) -> None:
    job_id, record = await runtime.run_manifest(chain_manifest(), wait=True, timeout=10)
    for key in (
        "job_id",
        "graph_id",
        "job_name",
        "status",
        "submitted_at",
        "updated_at",
        "daemon",
        "root_agent_ids",
        "placement_policy",
        "recovery_policy",
        "result",
        "manifest_ref",
    ):
        assert key in record
    assert record["daemon"] is False and record["root_agent_ids"] == ["r0"]
    assert record["placement_policy"] == "local" and record["recovery_policy"] == "local_restart"
    ref = record["manifest_ref"]
    assert ref["job_path"].endswith(job_id) and ref["manifest_path"].endswith("manifest.json")
    agents = {a["agent_id"]: a for a in await runtime.inspect_agents(job_id)}
    assert set(agents) == {"r0", "r1", "r2", "collect"}
    snap = agents["r1"]
    for key in (
        "agent_id",
        "node_id",
        "agent_type",
        "type",
        "role",
        "current_state",
        "mailbox_depth",
        "processed_messages",
        "assigned_node",
        "inflight_message",
        "pending_messages",
        "last_heartbeat_at",
        "parent_job_id",
        "metadata",
    ):
        assert key in snap
    assert snap["processed_messages"] == 3 and snap["current_state"] == {"forwarded": 3}
    assert snap["metadata"]["outbound_edges"] == ["r2"] and snap["parent_job_id"] == job_id
    assert {"paused", "outbound_edges", "heartbeat_interval_ms", "recovery_state"} <= set(snap["metadata"])


async def test_message_derivation_along_chain(runtime: Runtime) -> None:
    job_id, _ = await runtime.run_manifest(chain_manifest(inputs=[{"payload": {"k": 1}}]), wait=True, timeout=10)
    received = [e for e in await runtime.events(job_id) if e["type"] == "agent_message_received"]
    seed = received[0]["payload"]
    assert seed["from"] == "runtime" and seed["type"] == "init" and seed["class"] == "command"
    hop = received[1]["payload"]
    assert hop["from"] == "r0" and hop["to"] == "r1" and hop["type"] == "init" and hop["class"] == "command"
    assert hop["content_type"] == "application/json" and hop["content_encoding"] == "identity"
    ids = [r["payload"]["message_id"] for r in received]
    assert len(set(ids)) == len(ids)


async def test_fan_out_two_edges_same_target_and_star(runtime: Runtime) -> None:
    manifest = {
        "manifest_version": "1.0",
        "graph_id": "fan",
        "entrypoints": ["src"],
        "nodes": [
            {"node_id": "src", "agent_type": "router", "config": {"emit_type": "x"}},
            {"node_id": "sink", "agent_type": "aggregator", "config": {"complete_after": 3}},
        ],
        "edges": [
            {"from_node": "src", "to_node": "sink", "message_type": "x"},
            {"from_node": "src", "to_node": "sink", "message_type": "*"},
            {"from_node": "src", "to_node": "sink", "message_type": "other"},
        ],
        "initial_inputs": {"src": [{"a": 1}, {"a": 2}]},
    }
    _, record = await runtime.run_manifest(manifest, wait=True, timeout=10)
    # two copies per message (x and *), the "other" edge does not match; completes at 3 of 4 copies
    assert record["result"]["output"]["count"] == 3


async def test_dead_letter_for_unknown_target(runtime: Runtime) -> None:
    manifest = module_manifest(
        "mn_test_delegates.EmitTo",
        extra_nodes=[{"node_id": "done", "agent_type": "aggregator", "config": {"complete_on_message": True}}],
    )
    manifest["initial_inputs"] = {"m": [{"target": "ghost"}, {"target": "done", "v": 7}]}
    job_id, record = await runtime.run_manifest(manifest, wait=True, timeout=10)
    assert record["status"] == "completed"
    assert record["result"]["output"]["last_message"] == {"1": "int key", "v": 7}
    dead = [e for e in await runtime.events(job_id) if e["type"] == "dead_letter"]
    assert len(dead) == 1 and dead[0]["agent_id"] == "ghost"
    assert dead[0]["message"]["envelope"]["to"] == "ghost"


async def test_emit_message_and_complete_run(runtime: Runtime) -> None:
    manifest = module_manifest(
        "mn_test_delegates.EmitMessage",
        extra_nodes=[{"node_id": "fin", "agent_type": "module", "config": {"module": "mn_test_delegates.CompleteRun"}}],
    )
    manifest["initial_inputs"] = {"m": [{"target": "fin"}]}
    job_id, record = await runtime.run_manifest(manifest, wait=True, timeout=10)
    assert record["result"] == {"agent_id": "fin", "output": {"answer": 42}}
    assert types(await runtime.events(job_id)).count("job_completed") == 1


async def test_handle_message_error_fails_job(runtime: Runtime) -> None:
    job_id, record = await runtime.run_manifest(module_manifest("mn_test_delegates.Fail"), wait=True, timeout=10)
    assert record["status"] == "failed"
    assert record["result"] == {"agent_id": "m", "error": "ValueError: boom: bad input"}
    assert record["agent_id"] == "m" and record["reason"] == "ValueError: boom: bad input"
    assert record["error"]["schema_version"] == "mn.error.v1"
    assert record["status_reason"] == record["error"]["desc"]
    events = await runtime.events(job_id)
    assert types(events)[-2:] == ["agent_failed", "job_failed"]
    failed = events[-1]
    assert failed["agent_id"] == "m" and failed["error"]["details"]["message"] == "ValueError: boom: bad input"
    details = await runtime.job_details(job_id)
    assert details["failure"] == record["error"]


async def test_error_tuple_carries_details(runtime: Runtime) -> None:
    _, record = await runtime.run_manifest(module_manifest("mn_test_delegates.ErrorTuple"), wait=True, timeout=10)
    assert record["result"]["error"] == "custom failure"
    assert record["result"]["details"] == {"code": "custom.failure", "error": "custom failure"}
    assert record["error"]["code"] == "custom.failure"


async def test_bootstrap_failure(runtime: Runtime) -> None:
    job_id, record = await runtime.run_manifest(module_manifest("mn_test_delegates.BadInit"), wait=True, timeout=10)
    assert record["status"] == "failed" and record["result"] == {"error": "cannot start"}
    assert "job_running" not in types(await runtime.events(job_id))


async def test_module_errors_are_exact(runtime: Runtime) -> None:
    _, record = await runtime.run_manifest(module_manifest(""), wait=True, timeout=10)
    assert record["result"]["error"] == "module agent requires config.module"
    _, record = await runtime.run_manifest(module_manifest("nope_pkg.Thing"), wait=True, timeout=10)
    assert record["result"]["error"] == "module agent nope_pkg.Thing is not available"
    _, record = await runtime.run_manifest(module_manifest("x.Y", module_source="missing.py"), wait=True, timeout=10)
    assert record["result"]["error"].startswith("module source does not exist: ")
    _, record = await runtime.run_manifest(module_manifest("x.Y", module_source="a.py"), wait=True, timeout=10)
    # a mapping submission is stored as a bundle folder, so payloads/ exists but a.py does not
    assert record["result"]["error"].startswith("module source does not exist: ")


async def test_validation_errors_raise_without_writing(runtime: Runtime) -> None:
    with pytest.raises(ManifestError) as info:
        await runtime.run_manifest({"nodes": []})
    assert info.value.errors[:3] == ["manifest_version is required", "graph_id is required", "nodes must not be empty"]
    assert await runtime.list_jobs() == []


async def test_pause_queues_and_resume_drains(runtime: Runtime) -> None:
    manifest = chain_manifest(inputs=[{"i": 0}], complete_after=3)
    job_id = await runtime.run_manifest(manifest)
    await asyncio.sleep(0.05)
    assert await runtime.pause(job_id) == "paused"
    with pytest.raises(StateError, match="^job is not running$"):
        await runtime.pause(job_id)
    for i in (1, 2):
        assert await runtime.send_message(job_id, "r0", {"payload": {"i": i}}) == "delivered"
    await asyncio.sleep(0.1)
    agents = {a["agent_id"]: a for a in await runtime.inspect_agents(job_id)}
    assert agents["r0"]["mailbox_depth"] == 2 and agents["r0"]["metadata"]["paused"] is True
    assert len(agents["r0"]["pending_messages"]) == 2
    assert (await runtime.inspect_job(job_id))["status"] == "paused"
    assert await runtime.resume(job_id) == "running"
    with pytest.raises(StateError, match="^job is not paused$"):
        await runtime.resume(job_id)
    record = await runtime.wait_for_job(job_id, 5)
    assert record["status"] == "completed"
    assert [m["i"] for m in record["result"]["output"]["messages"]] == [0, 1, 2]
    t = types(await runtime.events(job_id))
    assert t.index("job_paused") < t.index("job_resumed")


async def test_send_message_defaults_and_errors(runtime: Runtime) -> None:
    job_id = await runtime.run_manifest(chain_manifest(inputs=[{"i": 0}], complete_after=2))
    with pytest.raises(AgentNotFound, match="^agent ghost is not running for job "):
        await runtime.send_message(job_id, "ghost", {})
    with pytest.raises(JobNotFound, match="^job nope was not found$"):
        await runtime.send_message("nope", "r0", {})
    await runtime.send_message(job_id, "r0", {"n": 1, "m": 2})
    record = await runtime.wait_for_job(job_id, 5)
    assert record["result"]["output"]["last_message"] == {"n": 1, "m": 2}
    received = [e["payload"] for e in await runtime.events(job_id) if e["type"] == "agent_message_received"]
    external = [r for r in received if r["from"] == "external"]
    assert external and external[0]["type"] == "command" and external[0]["class"] == "command"
    with pytest.raises(StateError, match=f"^job {job_id} is not running in the connected cluster$"):
        await runtime.send_message(job_id, "r0", {})


async def test_cancel(runtime: Runtime) -> None:
    job_id = await runtime.run_manifest(chain_manifest(inputs=[{"i": 0}], complete_after=5))
    assert await runtime.cancel(job_id) == "cancelled"
    record = await runtime.inspect_job(job_id)
    assert record["status"] == "cancelled" and record["result"] == {"reason": "cancelled by operator"}
    events = await runtime.events(job_id)
    assert events[-1]["type"] == "job_cancelled" and events[-1]["reason"] == "cancelled by operator"
    with pytest.raises(StateError, match="^job is already in a terminal state$"):
        await runtime.cancel(job_id)
    with pytest.raises(StateError, match="^job is not running$"):
        await runtime.pause(job_id)


async def test_wait_timeout_leaves_job_running(runtime: Runtime) -> None:
    job_id = await runtime.run_manifest(chain_manifest(inputs=[{"i": 0}], complete_after=5))
    with pytest.raises(WaitTimeoutError, match="^timed out waiting for job chain-"):
        await runtime.run_manifest(chain_manifest(inputs=[], complete_after=1), wait=True, timeout=0.2)
    with pytest.raises(WaitTimeoutError):
        await runtime.wait_for_job(job_id, 0.1)
    assert (await runtime.inspect_job(job_id))["status"] == "running"


async def test_list_jobs_details_and_cleanup(runtime: Runtime) -> None:
    done_id, _ = await runtime.run_manifest(chain_manifest(), wait=True, timeout=10)
    live_id = await runtime.run_manifest(chain_manifest(inputs=[{"i": 0}], complete_after=9))
    jobs = await runtime.list_jobs()
    assert [j["job_id"] for j in jobs] == [live_id, done_id]
    summary = jobs[0]
    assert summary["live?"] is True and summary["status"] == "running" and summary["nodes"] == ["mn@test"]
    assert summary["last_event"] is not None
    assert [j["job_id"] for j in await runtime.list_jobs(include_terminal=False)] == [live_id]
    assert len(await runtime.list_jobs(limit=1)) == 1
    details = await runtime.job_details(done_id, event_limit=3)
    assert set(details) == {"job", "summary", "agents", "recent_events", "sandboxes"}
    assert details["recent_events"][0]["type"] == "job_completed" and len(details["recent_events"]) == 3
    statuses = {a["agent_id"]: a["status"] for a in details["agents"]}
    assert statuses == {"collect": "ready", "r0": "ready", "r1": "ready", "r2": "ready"}
    overview = await runtime.cluster_overview()
    node = overview["nodes"][0]
    assert node["executor_pools"]["default"] == {"capacity": 4, "in_use": 0, "available": 4, "queued": 0, "active": 0}
    assert node["self?"] is True and node["hardware"]["cpu"]["logical_processors"] >= 1
    assert (await runtime.cleanup_jobs()) == {"deleted_count": 1, "deleted_jobs": [done_id]}
    result = await runtime.cleanup_jobs(all=True)
    assert result == {"deleted_count": 1, "deleted_jobs": [live_id]}
    assert await runtime.list_jobs() == []


async def test_cancel_unknown_job(runtime: Runtime) -> None:
    with pytest.raises(JobNotFound):
        await runtime.cancel("missing-1-abc")


def _aggregator_only(**config: Any) -> dict[str, Any]:
    return {
        "manifest_version": "1.0",
        "graph_id": "agg",
        "entrypoints": ["agg"],
        "nodes": [{"node_id": "agg", "agent_type": "collector", "config": config}],
        "initial_inputs": {"agg": [{"agent_id": "a", "v": 1}, {"agent_id": "a", "v": 2}, {"agent_id": "b", "v": 3}]},
    }


async def test_aggregator_deduplicates_and_completes(runtime: Runtime) -> None:
    job_id, record = await runtime.run_manifest(_aggregator_only(complete_after=2), wait=True, timeout=5)
    assert record["result"]["output"]["messages"] == [{"agent_id": "a", "v": 1}, {"agent_id": "b", "v": 3}]
    agg_events = [e for e in await runtime.events(job_id) if e["type"].startswith("aggregator_")]
    assert [(e["type"], e["payload"]) for e in agg_events] == [
        ("aggregator_received", {"count": 1}),
        ("aggregator_duplicate_ignored", {"agent_id": "a"}),
        ("aggregator_received", {"count": 2}),
    ]


async def test_sensor_emits_and_completes(runtime: Runtime) -> None:
    manifest = {
        "manifest_version": "1.0",
        "graph_id": "sense",
        "entrypoints": ["s"],
        "nodes": [
            {"node_id": "s", "agent_type": "sensor", "config": {"complete_after": 2, "complete_job": True}},
            {"node_id": "out", "agent_type": "aggregator", "config": {"complete_after": 99}},
        ],
        "edges": [{"from_node": "s", "to_node": "out", "message_type": "sensor_ready"}],
        "initial_inputs": {"s": [{"x": 1}, {"x": 2}]},
    }
    job_id, record = await runtime.run_manifest(manifest, wait=True, timeout=5)
    assert record["result"] == {"agent_id": "s", "output": {"count": 2, "last_message": {"x": 2}}}
    events = await runtime.events(job_id)
    assert [e["payload"]["count"] for e in events if e["type"] == "sensor_observed"] == [1, 2]
