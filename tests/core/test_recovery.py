"""Restart from agent snapshots: in-flight replay, restart limits, daemon jobs, node takeover."""

from __future__ import annotations

import asyncio
import shutil

import mn_test_delegates as delegates
import pytest
from engine_helpers import chain_manifest, module_manifest, types

from mncore.config import Settings
from mncore.runtime import Runtime


@pytest.fixture(autouse=True)
def _reset() -> None:
    delegates.CALLS.clear()
    delegates.GATE.clear()


def _slow_job(**policies: object) -> dict:
    manifest = module_manifest(
        "mn_test_delegates.Slow",
        extra_nodes=[{"node_id": "out", "agent_type": "aggregator", "config": {"complete_after": 2}}],
    )
    manifest["edges"] = [{"from_node": "m", "to_node": "out", "message_type": "slow_done"}]
    manifest["initial_inputs"] = {"m": [{"k": "first"}, {"k": "second"}]}
    manifest["policies"] = dict(policies)
    return manifest


async def _until(predicate, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


async def test_killed_agent_replays_inflight_message_exactly_once(runtime: Runtime) -> None:
    job_id = await runtime.run_manifest(_slow_job())
    await _until(lambda: len(delegates.CALLS) == 1)
    coordinator = runtime.coordinators[job_id]
    coordinator.kill_agent("m")  # the agent's task dies mid-message
    await _until(lambda: len(delegates.CALLS) == 2)
    assert delegates.CALLS[1] == ("slow", 2, {"k": "first"})  # replayed with the next invocation number
    delegates.GATE["slow"].set()
    record = await runtime.wait_for_job(job_id, 5)
    assert record["status"] == "completed"
    bodies = [c[2]["k"] for c in delegates.CALLS]
    assert bodies == ["first", "first", "second"]  # first replayed once, second processed once, nothing lost
    out = record["result"]["output"]["messages"]
    assert [m["body"]["k"] for m in out] == ["first", "second"]
    events = await runtime.events(job_id)
    t = types(events)
    assert t.index("agent_recovery_started") < t.index("agent_recovered")
    started = next(e for e in events if e["type"] == "agent_recovery_started")
    assert started["agent_id"] == "m" and started["attempt"] == 1


async def test_externally_cancelled_task_is_a_crash(runtime: Runtime) -> None:
    job_id = await runtime.run_manifest(_slow_job())
    await _until(lambda: len(delegates.CALLS) == 1)
    task = runtime.coordinators[job_id].workers["m"].task
    assert task is not None
    task.cancel()
    await _until(lambda: len(delegates.CALLS) == 2)
    delegates.GATE["slow"].set()
    assert (await runtime.wait_for_job(job_id, 5))["status"] == "completed"


async def test_restart_attempts_exhausted_fails_job(runtime: Runtime) -> None:
    job_id = await runtime.run_manifest(_slow_job(max_agent_restart_attempts=1))
    await _until(lambda: len(delegates.CALLS) == 1)
    runtime.coordinators[job_id].kill_agent("m")
    await _until(lambda: len(delegates.CALLS) == 2)
    runtime.coordinators[job_id].kill_agent("m")
    record = await runtime.wait_for_job(job_id, 5)
    assert record["status"] == "failed"
    assert record["result"] == {"agent_id": "m", "error": "agent m exceeded restart attempts (1)"}


async def test_daemon_jobs_never_exhaust_restarts(runtime: Runtime) -> None:
    manifest = _slow_job(max_agent_restart_attempts=1)
    manifest["daemon"] = True
    job_id = await runtime.run_manifest(manifest)
    for n in range(1, 4):
        await _until(lambda n=n: len(delegates.CALLS) == n)
        runtime.coordinators[job_id].kill_agent("m")
    await _until(lambda: len(delegates.CALLS) == 4)
    delegates.GATE["slow"].set()
    assert (await runtime.wait_for_job(job_id, 5))["status"] == "completed"


async def test_checkpoint_is_the_recovery_state(runtime: Runtime) -> None:
    manifest = module_manifest("mn_test_delegates.Checkpoint")
    manifest["initial_inputs"] = {"m": [{}, {}]}
    job_id = await runtime.run_manifest(manifest)
    await asyncio.sleep(0.2)
    snap = (await runtime.inspect_agents(job_id))[0]
    from mncore.agent_worker import decode_recovery_state

    assert decode_recovery_state(snap["metadata"]["recovery_state"]) == {"n": 2, "marker": "saved"}
    await runtime.cancel(job_id)


async def test_node_restart_takes_over_and_replays(settings: Settings) -> None:
    """Close the runtime mid-job (as SIGTERM would); a new runtime recovers the job from the store."""
    rt = Runtime(settings)
    await rt.start()
    job_id = await rt.run_manifest(_slow_job())
    await _until(lambda: len(delegates.CALLS) == 1)
    await rt.close()  # in-flight message stays in the snapshot
    assert (await _record(settings, job_id))["status"] == "running"
    delegates.GATE["slow"].set()
    async with Runtime(settings) as rt2:
        assert await rt2.recover_jobs() == [job_id]
        record = await rt2.wait_for_job(job_id, 5)
    assert record["status"] == "completed"
    assert [c[2]["k"] for c in delegates.CALLS] == ["first", "first", "second"]
    async with Runtime(settings) as rt3:
        t = types(await rt3.events(job_id))
    assert "job_recovery_started" in t and t[-1] == "job_completed"


async def test_takeover_fails_job_whose_bundle_is_gone(settings: Settings) -> None:
    rt = Runtime(settings)
    await rt.start()
    job_id = await rt.run_manifest(chain_manifest(inputs=[{"i": 0}], complete_after=5))
    path = (await rt.inspect_job(job_id))["manifest_ref"]["job_path"]
    await rt.close()
    shutil.rmtree(path)
    async with Runtime(settings) as rt2:
        await rt2.recover_jobs()
        record = await rt2.inspect_job(job_id)
    assert record["status"] == "failed"
    assert record["result"] == {"error": f"bundle for job {job_id} is no longer available: {path}"}


async def test_forced_cancel_of_orphan(settings: Settings) -> None:
    rt = Runtime(settings)
    await rt.start()
    job_id = await rt.run_manifest(chain_manifest(inputs=[{"i": 0}], complete_after=5))
    await rt.close()
    async with Runtime(settings) as rt2:  # no takeover: the job has no coordinator here
        assert await rt2.cancel(job_id) == "cancelled"
        record = await rt2.inspect_job(job_id)
        events = await rt2.events(job_id)
    assert record["result"] == {"reason": "forced cancellation of orphaned job"}
    assert events[-1]["type"] == "job_cancelled" and events[-1]["reason"] == "forced cancellation"


async def _record(settings: Settings, job_id: str) -> dict:
    async with Runtime(settings) as rt:
        return await rt.inspect_job(job_id)
