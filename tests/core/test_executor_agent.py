"""The executor agent's message side (executor-contract.md §2, §9-§14) with real host/bwrap runs."""

from __future__ import annotations

import base64
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
from engine_helpers import EXAMPLES, types

from mncore.config import Settings
from mncore.runtime import Runtime

PY = sys.executable


def _job(
    tmp: Path,
    script: str,
    extra_nodes: list[dict[str, Any]] | None = None,
    edges: list[dict[str, Any]] | None = None,
    inputs: list[Any] | None = None,
    **config: Any,
) -> str:
    """A bundle whose executor ``x`` runs ``script`` (python) and whose sink ``out`` completes on the first message."""
    root = tmp / f"bundle{len(list(tmp.glob('bundle*')))}"
    (root / "payloads").mkdir(parents=True)
    (root / "payloads" / "step.py").write_text(script)
    nodes = [
        {
            "node_id": "x",
            "agent_type": "executor",
            "config": {"runner": "host", "upload_path": "step.py", "command": [PY, "step.py"], **config},
        },
        {"node_id": "out", "agent_type": "aggregator", "config": {"complete_on_message": True}},
        *(extra_nodes or []),
    ]
    manifest = {
        "manifest_version": "1.0",
        "graph_id": "exec",
        "entrypoints": ["x"],
        "nodes": nodes,
        "edges": edges if edges is not None else [{"from_node": "x", "to_node": "out", "message_type": "*"}],
        "initial_inputs": {"x": inputs if inputs is not None else [{"n": 1}]},
    }
    (root / "manifest.json").write_text(json.dumps(manifest))
    return str(root)


def _print(obj: Any) -> str:
    return f"import json\nprint(json.dumps({obj!r}))\n"


async def _run(runtime: Runtime, bundle: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    job_id, record = await runtime.run_manifest(bundle, wait=True, timeout=30)
    return record, await runtime.events(job_id)


def _agent(events: list[dict[str, Any]], agent: str = "x") -> list[str]:
    return [e["type"] for e in events if e.get("agent_id") == agent and "payload" in e]


async def test_success_sequence_and_default_output(runtime: Runtime, tmp_path: Path) -> None:
    script = _print({"events": [{"type": "custom", "payload": {"k": 1}}, {"type": 3}, {"type": "no_payload"}]})
    record, events = await _run(runtime, _job(tmp_path, script))
    assert _agent(events) == [
        "agent_message_received",
        "executor_lease_requested",
        "executor_lease_acquired",
        "executor_lease_released",
        "sandbox_job_completed",
        "custom",
        "no_payload",
    ]
    by_type = {e["type"]: e for e in events}
    assert by_type["executor_lease_requested"]["payload"] == {"pool": "default", "slots": 1}
    acquired = by_type["executor_lease_acquired"]["payload"]
    assert set(acquired) == {"lease_id", "pool", "slots", "queue_wait_ms"}
    done = by_type["sandbox_job_completed"]["payload"]
    assert set(done) == {"sandbox_name", "exit_code", "attempts", "lease_id", "pool", "duration_ms", "resource_usage"}
    assert done["exit_code"] == 0 and done["attempts"] == 1 and done["lease_id"] == acquired["lease_id"]
    assert by_type["no_payload"]["payload"] == {}
    output = record["result"]["output"]["last_message"]
    assert output["agent_id"] == "x" and output["input"] == {"n": 1}
    sandbox = output["sandbox"]
    assert sandbox["attempts"] == 1 and sandbox["lease"] == {
        "lease_id": acquired["lease_id"],
        "pool": "default",
        "slots": 1,
    }
    assert sandbox["runner"] == "host" and sandbox["sandbox_name"].startswith("host-local-exec-")
    received = [e["payload"] for e in events if e["type"] == "agent_message_received" and e["agent_id"] == "out"]
    assert received[0]["type"] == "executor_result" and received[0]["class"] == "event"


async def test_output_message_type_null_and_string(runtime: Runtime, tmp_path: Path) -> None:
    quiet = _job(tmp_path, _print({"emit_messages": [{"type": "manual", "body": {"v": 1}}]}), output_message_type=None)
    record, _ = await _run(runtime, quiet)
    assert record["result"]["output"]["last_message"] == {"v": 1}  # only the explicit emit arrived
    named = _job(tmp_path, "print('plain text')", output_message_type="my_result")
    record, events = await _run(runtime, named)
    assert record["result"]["output"]["last_message"]["sandbox"]["stdout"] == "plain text"
    assert [
        e["payload"]["type"] for e in events if e["type"] == "agent_message_received" and e["agent_id"] == "out"
    ] == ["my_result"]


async def test_emit_messages_routing_bodies_and_skips(runtime: Runtime, tmp_path: Path) -> None:
    items = [  # the edge-routed one last: "out" completes the job when it handles it
        {"to": "direct", "type": "anything", "payload": {"b": 2}},
        {
            "to": "raw",
            "type": "bin",
            "body_base64": base64.b64encode(b"\xff\x00").decode(),
            "content_type": "application/octet-stream",
        },
        {"type": "bad", "body_base64": "###"},
        {"body": {"no": "type"}},
        {"type": "edge_routed", "body": {"a": 1}},
    ]
    extra = [
        {"node_id": "direct", "agent_type": "aggregator", "config": {"complete_after": 99}},
        {"node_id": "raw", "agent_type": "aggregator", "config": {"complete_after": 99}},
    ]
    edges = [{"from_node": "x", "to_node": "out", "message_type": "edge_routed"}]
    bundle = _job(tmp_path, _print({"emit_messages": items}), extra, edges, output_message_type=None)
    runtime_job = await runtime.run_manifest(bundle, wait=True, timeout=30)
    job_id, record = runtime_job
    assert record["result"]["output"]["last_message"] == {"a": 1}
    agents = {a["agent_id"]: a for a in await runtime.inspect_agents(job_id)}
    assert agents["direct"]["processed_messages"] == 1
    assert agents["raw"]["processed_messages"] == 1
    raw_msgs = agents["raw"]["current_state"]["messages"]
    assert raw_msgs == [{"$bytes": "/wA="}]  # bytes bodies are rendered as $bytes in JSON documents


async def test_next_state_reaches_the_context_and_null_resets(runtime: Runtime, tmp_path: Path) -> None:
    script = (
        "import json, os\n"
        "ctx = json.load(open(os.environ['MN_CONTEXT_FILE']))\n"
        "state = ctx['agent_state']\n"
        "body = json.load(open(os.environ['MIRROR_NEURON_INPUT_FILE']))\n"
        "out = {'events': [{'type': 'saw', 'payload': {'state': state}}]}\n"
        "if body['step'] == 0: out['next_state'] = {'count': 1}\n"
        "if body['step'] == 1: out['next_state'] = None\n"
        "if body['step'] == 2: out['complete_job'] = {'final': state}\n"
        "print(json.dumps(out))\n"
    )
    bundle = _job(tmp_path, script, inputs=[{"step": 0}, {"step": 1}, {"step": 2}], output_message_type=None)
    record, events = await _run(runtime, bundle)
    seen = [e["payload"]["state"] for e in events if e["type"] == "saw"]
    assert seen == [{}, {"count": 1}, {}]
    assert record["result"] == {"agent_id": "x", "output": {"final": {}}}


@pytest.mark.parametrize(
    ("stdout", "config_complete", "expected"),
    [
        ({"complete_run": {"r": 1}, "complete_job": {"j": 1}, "complete_job?": True}, True, {"r": 1}),
        ({"complete_job": {"j": 1}, "complete_job?": True}, False, {"j": 1}),
        ({"complete_job": None, "complete_job?": True}, False, "default"),
        ({"complete_job": False, "events": []}, True, "default"),
    ],
)
async def test_completion_precedence(
    runtime: Runtime, tmp_path: Path, stdout: dict[str, Any], config_complete: bool, expected: Any
) -> None:
    bundle = _job(tmp_path, _print(stdout), edges=[], output_message_type=None, complete_job=config_complete)
    record, _ = await _run(runtime, bundle)
    output = record["result"]["output"]
    if expected == "default":
        assert output["agent_id"] == "x" and output["input"] == {"n": 1} and "sandbox" in output
    else:
        assert output == expected


async def test_transient_failure_is_retried_inside_one_lease(runtime: Runtime, tmp_path: Path) -> None:
    script = (
        "import os, sys\n"
        "marker = os.path.join(os.environ['PROBE_DIR'], 'tried')\n"
        "if not os.path.exists(marker):\n"
        "    open(marker, 'w').close(); print('connection reset by peer', file=sys.stderr); sys.exit(3)\n"
        "print('ok')\n"
    )
    bundle = _job(tmp_path, script, max_attempts=3, retry_backoff_ms=10, environment={"PROBE_DIR": str(tmp_path)})
    record, events = await _run(runtime, bundle)
    assert record["status"] == "completed"
    assert _agent(events).count("executor_lease_acquired") == 1
    done = next(e for e in events if e["type"] == "sandbox_job_completed")
    assert done["payload"]["attempts"] == 2


async def test_failure_sequence_and_job_failed(runtime: Runtime, tmp_path: Path) -> None:
    bundle = _job(tmp_path, "import sys\nprint('no good', file=sys.stderr)\nsys.exit(4)\n", max_attempts=3)
    job_id, record = await runtime.run_manifest(bundle, wait=True, timeout=30)
    events = await runtime.events(job_id)
    assert types(events)[-3:] == ["sandbox_job_failed", "agent_failed", "job_failed"]
    assert _agent(events)[-3:] == ["executor_lease_acquired", "executor_lease_released", "sandbox_job_failed"]
    failed = next(e for e in events if e["type"] == "sandbox_job_failed")["payload"]
    assert failed["exit_code"] == 4 and failed["attempts"] == 1  # not transient: no retry
    assert failed["error"]["schema_version"] == "mn.error.v1"
    assert record["status"] == "failed" and record["result"]["error"] == "command exited with status 4"
    assert record["result"]["details"]["stderr"] == "no good"
    agent = next(a for a in await runtime.inspect_agents(job_id) if a["agent_id"] == "x")
    assert agent["current_state"]["last_error"]["exit_code"] == 4
    summary = next(a for a in (await runtime.job_details(job_id))["agents"] if a["agent_id"] == "x")
    assert summary["status"] == "error"


async def test_failure_message_type_fallback(runtime: Runtime, tmp_path: Path) -> None:
    bundle = _job(tmp_path, "import sys\nsys.exit(2)\n", failure_message_type="fallback")
    record, events = await _run(runtime, bundle)
    assert record["status"] == "completed"
    body = record["result"]["output"]["last_message"]
    assert body["status"] == "failed" and body["outputs"]["fallback_used"] is True
    assert body["outputs"]["failed_agent_id"] == "x" and body["outputs"]["error"] == "command exited with status 2"
    assert "sandbox_job_failed" not in types(events)
    assert _agent(events)[-2:] == ["executor_lease_released", "executor_fallback_dispatched"]


async def test_lease_queue_limit_rejects_then_retries(settings: Settings, tmp_path: Path) -> None:
    slow = "import time\ntime.sleep(0.3)\nprint('done')\n"
    root = tmp_path / "b"
    (root / "payloads").mkdir(parents=True)
    (root / "payloads" / "step.py").write_text(slow)
    cfg = {"runner": "host", "upload_path": "step.py", "command": [PY, "step.py"], "lease_queue_timeout_ms": 50}
    manifest = {
        "manifest_version": "1.0",
        "graph_id": "limits",
        "entrypoints": ["a", "b"],
        "nodes": [
            {"node_id": "a", "agent_type": "executor", "config": cfg},
            {"node_id": "b", "agent_type": "executor", "config": cfg},
            {"node_id": "out", "agent_type": "aggregator", "config": {"complete_after": 2}},
        ],
        "edges": [{"from_node": n, "to_node": "out", "message_type": "*"} for n in ("a", "b")],
    }
    (root / "manifest.json").write_text(json.dumps(manifest))
    async with Runtime(settings.replace(executor_max_concurrency=1)) as rt:
        job_id, record = await rt.run_manifest(str(root), wait=True, timeout=30)
        events = await rt.events(job_id)
    assert record["status"] == "completed"
    rejected = [e for e in events if e["type"] == "executor_lease_rejected"]
    assert rejected and rejected[0]["payload"]["reason"] == "executor_pool_queue_timeout"
    assert rejected[0]["payload"]["retry_after_ms"] == 250
    assert len([e for e in events if e["type"] == "sandbox_job_completed"]) == 2


async def test_runner_fallback_event_once_before_first_lease(settings: Settings, tmp_path: Path) -> None:
    fallback_settings = settings.replace(default_runner="auto", bwrap_bin="/nonexistent/bwrap")
    bundle = _job(tmp_path, "print('hi')", inputs=[{"n": 1}, {"n": 2}], runner="bwrap")
    async with Runtime(fallback_settings) as rt:
        job_id, record = await rt.run_manifest(bundle, wait=True, timeout=30)
        events = await rt.events(job_id)
    assert record["status"] == "completed"
    kinds = _agent(events)
    assert kinds.count("executor_runner_fallback") == 1
    assert kinds.index("executor_runner_fallback") < kinds.index("executor_lease_requested")
    payload = next(e for e in events if e["type"] == "executor_runner_fallback")["payload"]
    assert payload["requested"] == "bwrap" and payload["selected"] == "host" and payload["reason"]


async def test_recovery_replays_last_output(runtime: Runtime, tmp_path: Path) -> None:
    bundle = _job(
        tmp_path,
        "print('first')",
        edges=[{"from_node": "x", "to_node": "out", "message_type": "*"}],
        extra_nodes=[],
        inputs=[{"n": 1}],
    )
    manifest = json.loads(Path(bundle, "manifest.json").read_text())
    # a sensor counts the replayed output (an aggregator would de-duplicate it by agent_id)
    manifest["nodes"][1] = {
        "node_id": "out",
        "agent_type": "sensor",
        "config": {"complete_after": 2, "complete_job": True},
    }
    Path(bundle, "manifest.json").write_text(json.dumps(manifest))
    job_id = await runtime.run_manifest(bundle)
    coordinator = runtime.coordinators[job_id]
    import asyncio

    while coordinator.workers["x"].state.get("runs", 0) < 1:
        await asyncio.sleep(0.02)
    coordinator.kill_agent("x")
    record = await runtime.wait_for_job(job_id, 10)
    events = await runtime.events(job_id)
    assert record["status"] == "completed"  # the replayed output is the second message for "out"
    assert types(events).index("agent_recovered") < types(events).index("executor_output_replayed")
    replayed = next(e for e in events if e["type"] == "executor_output_replayed")
    assert replayed["payload"] == {"reason": "agent_recovery", "agent_id": "x"}


def _prime_bundle(tmp: Path, workers: int) -> str:
    """The prime-sweep example widened to ``workers`` executors on the node's default sandbox runner."""
    root = tmp / "prime"
    shutil.copytree(EXAMPLES / "prime-sweep", root)
    manifest = json.loads((root / "manifest.json").read_text())
    nodes = [n for n in manifest["nodes"] if not n["node_id"].startswith("worker_")]
    template = next(n for n in manifest["nodes"] if n["node_id"] == "worker_01")
    edges = [e for e in manifest["edges"] if not e["from_node"].startswith("worker_")]
    for i in range(1, workers + 1):
        node = json.loads(json.dumps(template))
        node["node_id"] = f"worker_{i:02d}"
        node["config"].pop("runner_module")  # absent: the node default sandbox runner (gen1 OpenShell mapping)
        nodes.insert(i, node)
        edges.append({"from_node": node["node_id"], "to_node": "collector", "message_type": "primes_counted"})
    collector = next(n for n in nodes if n["node_id"] == "collector")
    collector["config"]["complete_after"] = workers
    manifest.update(nodes=nodes, edges=edges)
    manifest["nodes"][0]["config"]["environment"]["PRIME_WORKERS"] = str(workers)
    (root / "manifest.json").write_text(json.dumps(manifest))
    return str(root)


async def test_prime_sweep_with_100_executors(settings: Settings, tmp_path: Path) -> None:
    async with Runtime(settings.replace(default_runner="auto", executor_max_concurrency=8)) as rt:
        job_id, record = await rt.run_manifest(_prime_bundle(tmp_path, 100), wait=True, timeout=300)
        runners = {
            e["payload"].get("sandbox_name", "")[:5]
            for e in await rt.events(job_id)
            if e["type"] == "sandbox_job_completed"
        }
    assert record["status"] == "completed", record
    assert record["result"]["output"] == {"primes_below": 400000, "prime_count": 33860, "workers": 100}
    assert runners  # ran in sandboxes (or host with a fallback event when bwrap is unusable)


async def test_ndjson_stream_example(runtime: Runtime) -> None:
    _, record = await runtime.run_manifest(str(EXAMPLES / "ndjson-stream"), wait=True, timeout=60)
    assert record["result"]["output"] == {"chunks": 8, "rows": 2000, "sum": 1999000, "last_seq": 7}
