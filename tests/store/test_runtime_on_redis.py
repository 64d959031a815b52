"""The runtime on a real Redis (issue #5 acceptance): real jobs, the raw key layout, and faults.

Every check reads the server with a plain ``redis.Redis`` client: exact key names and types of
runtime-lifecycle.md §10.1, the documents of §11.1/§11.2, the events of §9 and their PUBLISH.
Faults: redis-server restarted mid-job (absorbed by the store's reconnect, or outlasting it so
the write-behind re-sends), the runtime SIGKILLed mid-job and recovered by another node.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from redis_runtime_helpers import (
    JOB_FIELDS,
    SNAPSHOT_FIELDS,
    SNAPSHOT_METADATA,
    ChannelRecorder,
    ReplyLosingProxy,
    check_event_list,
    check_snapshots_match_events,
    duplicates,
    fanout_bundle,
    free_port,
    key_types,
    raw_events,
    raw_record,
    raw_snapshots,
    received,
    redis_settings,
    stream_bundle,
)

from mncore.errors import StoreUnavailable
from mncore.runtime import Runtime
from mncore.store import RedisStore

pytestmark = pytest.mark.redis

ROUTER_CHAIN = Path(__file__).resolve().parents[2] / "examples" / "router-chain"


async def _until(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what} not reached within {timeout} s"
        await asyncio.sleep(0.02)


# ---- (a) real jobs, raw keys ----------------------------------------------------------------------


async def test_router_chain_writes_the_specs_keys_documents_and_publishes(
    redis_server: Any, redis_namespace: str, tmp_path: Path
) -> None:
    ns = redis_namespace
    settings = redis_settings(tmp_path, redis_server.url, ns)
    recorder = ChannelRecorder(redis_server.client(), ns)  # subscribed before the job exists
    try:
        async with Runtime(settings) as rt:
            assert isinstance(rt.store, RedisStore) and rt.store.keys.ns == ns
            job_id, _ = await rt.run_manifest(str(ROUTER_CHAIN), wait=True, timeout=20)
        with redis_server.client() as r:
            agents = ["collect", "enrich", "ingress", "normalise", "observe"]
            assert key_types(r, ns) == {
                f"{ns}:jobs": "set",
                f"{ns}:nodes": "set",
                f"{ns}:job:{job_id}": "string",
                f"{ns}:job:{job_id}:events": "list",
                f"{ns}:job:{job_id}:agents": "set",
                **{f"{ns}:job:{job_id}:agent:{a}": "string" for a in agents},
            }  # no lease:job:<id> left after completion
            assert r.smembers(f"{ns}:jobs") == {job_id.encode()}
            assert r.smembers(f"{ns}:nodes") == {b"mn@redis-a"}
            record = raw_record(r, ns, job_id)
            events = raw_events(r, ns, job_id)
            bodies = r.lrange(f"{ns}:job:{job_id}:events", 0, -1)
            snapshots = raw_snapshots(r, ns, job_id)
        # §11.1 job record
        assert set(JOB_FIELDS) <= set(record)
        assert record["job_id"] == job_id and record["graph_id"] == "router_chain"
        assert record["job_name"] == "Router chain" and record["status"] == "completed"
        assert record["daemon"] is False and record["root_agent_ids"] == ["ingress"]
        assert (record["placement_policy"], record["recovery_policy"]) == ("local", "local_restart")
        assert record["result"]["agent_id"] == "collect" and record["result"]["output"]["count"] == 4
        assert record["manifest_ref"] == {
            "graph_id": "router_chain",
            "manifest_version": "1.0",
            "manifest_path": str(ROUTER_CHAIN / "manifest.json"),
            "job_path": str(ROUTER_CHAIN),
        }
        # §9 events, oldest first
        check_event_list(events, job_id, terminal=True)
        assert [e["type"] for e in events[:4]] == ["job_pending", "job_validated", "job_scheduled", "job_running"]
        assert events[2]["node"] == "mn@redis-a"
        assert events[-1]["type"] == "job_completed" and events[-1]["result"] == record["result"]
        got = received(events)
        assert sorted(got) == agents and all(len(ids) == 4 and not duplicates(ids) for ids in got.values())
        first = next(e for e in events if e["type"] == "agent_message_received")
        assert set(first["payload"]) == {
            "message_id", "from", "to", "type", "class", "content_type", "content_encoding", "stream",
        }  # fmt: skip
        # §11.2 snapshots
        assert sorted(snapshots) == agents
        for agent_id, snapshot in snapshots.items():
            assert set(SNAPSHOT_FIELDS) <= set(snapshot) and set(SNAPSHOT_METADATA) <= set(snapshot["metadata"])
            assert snapshot["agent_id"] == snapshot["node_id"] == agent_id
            assert snapshot["parent_job_id"] == job_id and snapshot["assigned_node"] == "mn@redis-a"
            assert (snapshot["inflight_message"], snapshot["pending_messages"], snapshot["mailbox_depth"]) == (
                None,
                [],
                0,
            )
        assert snapshots["normalise"]["metadata"]["outbound_edges"] == ["enrich"]
        assert snapshots["enrich"]["type"] == "map" and snapshots["ingress"]["role"] == "root"
        check_snapshots_match_events(snapshots, events)
        # every appended event was PUBLISHed on <ns>:channel:events:<id>, same JSON, same order
        channel = f"{ns}:channel:events:{job_id}"
        await _until(lambda: len(recorder.on(channel)) >= len(bodies), 5, "every publish")
        assert recorder.on(channel) == bodies
        assert {name for name, _ in recorder.messages} == {channel}
    finally:
        recorder.close()


async def test_executor_job_on_the_host_runner(redis_server: Any, redis_namespace: str, tmp_path: Path) -> None:
    ns = redis_namespace
    settings = redis_settings(tmp_path, redis_server.url, ns)
    async with Runtime(settings) as rt:
        job_id, record = await rt.run_manifest(fanout_bundle(tmp_path, 1, 3, sleep=0.0), wait=True, timeout=30)
    assert record["status"] == "completed" and record["result"]["output"] == {"count": 3}
    with redis_server.client() as r:
        assert r.exists(f"{ns}:lease:job:{job_id}") == 0
        events = raw_events(r, ns, job_id)
        snapshots = raw_snapshots(r, ns, job_id)
        assert raw_record(r, ns, job_id)["status"] == "completed"
    check_event_list(events, job_id, terminal=True)
    check_snapshots_match_events(snapshots, events)
    by_type: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        by_type.setdefault(event["type"], []).append(event)
    for kind in ("executor_lease_requested", "executor_lease_acquired", "executor_lease_released"):
        assert [e["agent_id"] for e in by_type[kind]] == ["x0"] * 3, kind
    completed = by_type["sandbox_job_completed"]
    assert len(completed) == 3
    for event in completed:
        assert {"sandbox_name", "exit_code", "attempts", "lease_id", "pool", "duration_ms"} <= set(event["payload"])
        assert event["payload"]["exit_code"] == 0 and event["payload"]["pool"] == "default"
    state = snapshots["x0"]["current_state"]
    assert state["runs"] == 3 and state["last_error"] is None
    assert state["last_result"]["exit_code"] == 0 and set(state["last_result"]["lease"]) == {
        "lease_id",
        "pool",
        "slots",
    }
    assert snapshots["x0"]["agent_type"] == "executor" and snapshots["x0"]["metadata"]["outbound_edges"] == ["done"]


# ---- (b) redis-server restarted mid-job -----------------------------------------------------------


def _check_stream(server: Any, ns: str, job_id: str, ticks: int) -> None:
    """Completed, and the event list has every message once per receiving agent, in order."""
    with server.client() as r:
        record = raw_record(r, ns, job_id)
        events = raw_events(r, ns, job_id)
        snapshots = raw_snapshots(r, ns, job_id)
    assert record["status"] == "completed" and record["result"]["output"] == {"count": ticks}
    check_event_list(events, job_id, terminal=True)
    got = received(events)
    for agent_id in ("pump", "relay", "done"):  # no loss: all ticks; no duplicate: each message once
        assert len(got[agent_id]) == ticks and not duplicates(got[agent_id]), agent_id
    assert [e["payload"]["i"] for e in events if e["type"] == "pumped"] == list(range(ticks))
    check_snapshots_match_events(snapshots, events)


async def test_clean_redis_restart_mid_job_loses_and_duplicates_nothing(
    redis_server_factory: Callable[[], Any], redis_namespace: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """SHUTDOWN SAVE + start in the middle of a stream of events: the store's reconnect-with-backoff
    retries the batch in flight; the job goes on and completes."""
    caplog.set_level(logging.WARNING, logger="mncore.store.redis")
    server, ns, ticks = redis_server_factory(), redis_namespace, 400
    async with Runtime(redis_settings(tmp_path, server.url, ns)) as rt:
        job_id = await rt.submit(stream_bundle(tmp_path, ticks, 0.004))
        with server.client() as r:
            await _until(lambda: r.llen(f"{ns}:job:{job_id}:events") >= 100, 10, "a stream of events")
        coordinator = rt.coordinators[job_id]
        await asyncio.to_thread(server.restart, True)
        assert rt.coordinators.get(job_id) is coordinator, "the job must still be running after the restart"
        record = await rt.wait_for_job(job_id, 30)
    assert record["status"] == "completed"
    assert any("Redis write_batch failed" in r.getMessage() for r in caplog.records), "the restart went unnoticed"
    _check_stream(server, ns, job_id, ticks)


async def test_a_write_applied_but_unanswered_is_resent_after_the_restart_and_stored_once(
    redis_server_factory: Callable[[], Any], redis_namespace: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The reply to an applied event write is lost, then Redis is unreachable past the store retries and
    restarted: the write-behind keeps the unacknowledged batch (merged with newer events), re-sends it
    after the restart, and the idempotent append stores the already-applied events once."""
    caplog.set_level(logging.WARNING, logger="mncore.persistence")
    server, ns, ticks = redis_server_factory(), redis_namespace, 600
    proxy = ReplyLosingProxy(server.port)
    await proxy.start()
    store = RedisStore(proxy.url, namespace=ns, attempts=2, backoff=(0.05, 0.1))  # gives up after ~50 ms
    try:
        async with Runtime(redis_settings(tmp_path, proxy.url, ns), store=store) as rt:
            assert rt.persister is not None
            job_id = await rt.submit(stream_bundle(tmp_path, ticks, 0.004))
            events_key = f"{ns}:job:{job_id}:events"
            with server.client() as r:
                await _until(lambda: r.llen(events_key) >= 100, 10, "a stream of events")
                proxy.arm()
                await asyncio.wait_for(proxy.lost.wait(), 5)
                applied = r.llen(events_key)  # includes the write whose answer was lost
            persister = rt.persister
            await _until(lambda: persister._carry is not None, 5, "a carried batch")
            assert persister._carry is not None and persister._carry.events[job_id][0] < applied
            coordinator = rt.coordinators[job_id]
            await asyncio.to_thread(server.restart, True)  # SHUTDOWN SAVE + start: the applied write stays
            await asyncio.sleep(0.5)
            assert coordinator.event_seq > applied + 50, "the job did not keep going while Redis was away"
            proxy.release()
            assert rt.coordinators.get(job_id) is coordinator, "the job must still be running after the restart"
            record = await rt.wait_for_job(job_id, 30)
    finally:
        await proxy.close()
    assert record["status"] == "completed"
    assert any("store write failed, will retry" in r.getMessage() for r in caplog.records)
    _check_stream(server, ns, job_id, ticks)


async def test_outage_across_the_job_completion_delays_it_until_the_terminal_state_is_durable(
    redis_server_factory: Callable[[], Any], redis_namespace: str, tmp_path: Path
) -> None:
    """The job ends while Redis is down (past the store retries): it is not reported done, and its lease is
    not released, before the terminal record and events are in Redis (regression: the job hung forever)."""
    server, ns, ticks = redis_server_factory(), redis_namespace, 150
    store = RedisStore(server.url, namespace=ns, attempts=2, backoff=(0.05, 0.1))
    async with Runtime(redis_settings(tmp_path, server.url, ns), store=store) as rt:
        job_id = await rt.submit(stream_bundle(tmp_path, ticks, 0.004))
        with server.client() as r:
            await _until(lambda: r.llen(f"{ns}:job:{job_id}:events") >= 40, 10, "a stream of events")
        coordinator = rt.coordinators[job_id]
        await asyncio.to_thread(server.stop, True)
        await _until(lambda: coordinator.terminal, 10, "the end of the job")
        await asyncio.sleep(0.5)  # finalisation is waiting for the store
        assert not coordinator.done.done()
        await asyncio.to_thread(server.start)
        record = await rt.wait_for_job(job_id, 10)
    assert record["status"] == "completed"
    with server.client() as r:
        assert r.exists(f"{ns}:lease:job:{job_id}") == 0
    _check_stream(server, ns, job_id, ticks)


# ---- (c) the runtime SIGKILLed mid-job ---------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    sys.path.insert(0, {here!r})
    from redis_runtime_helpers import redis_settings
    from mncore.runtime import Runtime

    async def main():
        rt = Runtime(redis_settings(Path({tmp!r}), {url!r}, {ns!r}))
        await rt.start()
        print(await rt.submit({bundle!r}), flush=True)
        await asyncio.sleep(3600)

    asyncio.run(main())
    """
)


def _completed_runs(r: Any, ns: str, job_id: str) -> int:
    return sum(e["type"] == "sandbox_job_completed" for e in raw_events(r, ns, job_id))


async def test_runtime_killed_mid_job_leaves_a_consistent_state_and_another_node_finishes_it(
    redis_server: Any, redis_namespace: str, tmp_path: Path
) -> None:
    ns, executors, messages = redis_namespace, 4, 8
    bundle = fanout_bundle(tmp_path, executors, messages, sleep=0.15)
    script = CHILD.format(
        here=str(Path(__file__).parent), tmp=str(tmp_path / "a"), url=redis_server.url, ns=ns, bundle=bundle
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    r = redis_server.client()
    try:
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 30)  # type: ignore[union-attr]
        job_id = line.strip()
        await _until(lambda: _completed_runs(r, ns, job_id) >= executors, 20, "first runs")
        proc.kill()  # SIGKILL while runs are in flight
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()  # type: ignore[union-attr]
    try:
        lease = f"{ns}:lease:job:{job_id}"
        # What the dead runtime left is one consistent cut: running, every snapshot, contiguous events.
        before = raw_events(r, ns, job_id)
        snapshots = raw_snapshots(r, ns, job_id)
        assert raw_record(r, ns, job_id)["status"] == "running"
        assert sorted(snapshots) == sorted(["split", "done", *(f"x{i}" for i in range(executors))])
        check_event_list(before, job_id, terminal=False)
        assert not any(duplicates(ids) for ids in received(before).values())
        check_snapshots_match_events(snapshots, before)
        inflight = {
            a: s["inflight_message"]["envelope"]["message_id"] for a, s in snapshots.items() if s["inflight_message"]
        }
        assert any(a.startswith("x") for a in inflight), "no executor run was in flight at the kill"
        assert r.get(lease) == b"mn@redis-a"

        async with Runtime(redis_settings(tmp_path / "b", redis_server.url, ns, node_name="mn@redis-b")) as rt:
            assert await rt.recover_jobs() == []  # the dead node's lease still holds the job
            # A starting node waits for the old lease to expire (<= 10 s after its last renewal).
            await _until(lambda: r.exists(lease) == 0, 12, "lease expiry")
            assert await rt.recover_jobs() == [job_id]
            record = await rt.wait_for_job(job_id, 60)
        assert record["status"] == "completed" and record["result"]["output"] == {"count": executors * messages}

        events = raw_events(r, ns, job_id)
        assert events[: len(before)] == before  # nothing rewritten, the new node appended after the cut
        check_event_list(events, job_id, terminal=True)
        after = events[len(before) :]
        assert after[0]["type"] == "job_recovery_started"
        recovered = sorted((e["agent_id"], e["attempt"]) for e in after if e["type"] == "agent_recovered")
        assert recovered == sorted((agent_id, 1) for agent_id in snapshots)
        got = received(events)
        for agent_id, ids in got.items():  # only a message in flight at the kill is replayed (at-least-once)
            assert duplicates(ids) <= {inflight.get(agent_id)}, agent_id
        assert len(set(got["split"])) == messages
        assert all(len(set(got[f"x{i}"])) == messages for i in range(executors))  # no run lost
        check_snapshots_match_events(raw_snapshots(r, ns, job_id), events)
        assert r.exists(lease) == 0 and r.smembers(f"{ns}:nodes") == {b"mn@redis-a", b"mn@redis-b"}
    finally:
        r.close()


# ---- (d) cleanup, (e) unreachable ----------------------------------------------------------------------


async def test_cleanup_jobs_removes_every_key_of_the_job(
    redis_server: Any, redis_namespace: str, tmp_path: Path
) -> None:
    ns = redis_namespace
    async with Runtime(redis_settings(tmp_path, redis_server.url, ns)) as rt:
        job_id, record = await rt.run_manifest(str(ROUTER_CHAIN), wait=True, timeout=20)
        assert record["status"] == "completed"
        with redis_server.client() as r:
            assert len(list(r.scan_iter(match=f"{ns}:job:{job_id}*"))) == 3 + 5
            assert await rt.cleanup_jobs() == {"deleted_count": 1, "deleted_jobs": [job_id]}
            assert list(r.scan_iter(match=f"{ns}:job:{job_id}*")) == []
            assert r.sismember(f"{ns}:jobs", job_id) == 0
            assert key_types(r, ns) == {f"{ns}:nodes": "set"}


async def test_unreachable_redis_at_start_is_a_clear_error_not_a_hang(tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    settings = redis_settings(tmp_path, None, "mn_unreachable", redis_url=url)  # MN_REDIS_URL this time
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match=r"^cannot reach Redis at redis://127\.0\.0\.1:\d+/0: "):
        async with Runtime(settings):
            pass
    assert time.monotonic() - started < 5.0


async def test_redis_that_lost_its_data_mid_job_does_not_stall_the_job(
    redis_server_factory: Callable[[], Any], redis_namespace: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """kill -9 of a Redis without persistence: what it held is gone. The lost events cannot be
    rebuilt; the runtime says so, continues the event list from what the store holds, and the job
    still completes (its record is re-written by the next batch) instead of retrying forever."""
    caplog.set_level(logging.ERROR, logger="mncore.persistence")
    server, ns, ticks = redis_server_factory(), redis_namespace, 300
    async with Runtime(redis_settings(tmp_path, server.url, ns)) as rt:
        job_id = await rt.submit(stream_bundle(tmp_path, ticks, 0.004))
        with server.client() as r:
            await _until(lambda: r.llen(f"{ns}:job:{job_id}:events") >= 100, 10, "a stream of events")
        await asyncio.to_thread(server.kill)
        await asyncio.to_thread(server.start)
        record = await rt.wait_for_job(job_id, 60)
    assert record["status"] == "completed"
    assert any("the store lost" in r.getMessage() for r in caplog.records)
    with server.client() as r:
        events = raw_events(r, ns, job_id)
        stored = raw_record(r, ns, job_id)
    assert stored["status"] == "completed"
    assert [e["type"] for e in events].count("job_completed") == 1 and events[-1]["type"] == "job_completed"
