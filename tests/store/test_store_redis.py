"""Redis backend: the exact key layout of the spec, cross-process pub/sub, and faults on a real server."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from mncore._util import dumps
from mncore.errors import StateError, StoreUnavailable
from mncore.store import Batch, RedisStore

pytestmark = pytest.mark.redis


def job(job_id: str) -> dict[str, Any]:
    return {"job_id": job_id, "status": "running", "daemon": False}


def events(job_id: str, first: int, count: int) -> list[dict[str, Any]]:
    return [
        {"type": "tick", "job_id": job_id, "timestamp": "2024-01-01T00:00:00.000Z", "n": first + i}
        for i in range(count)
    ]


async def open_store(url: str, namespace: str, **kwargs: Any) -> RedisStore:
    store = RedisStore(url, namespace=namespace, **kwargs)
    await store.open()
    return store


# ---- key layout (runtime-lifecycle.md §10.1) -------------------------------------------------------------


async def test_keys_types_and_documents_are_the_specs(redis_server: Any, redis_namespace: str) -> None:
    ns = redis_namespace
    store = await open_store(redis_server.url, ns)
    try:
        agent = {"agent_id": "router", "agent_type": "router", "current_state": {}}
        await store.write_batch(
            Batch(jobs={"j1": job("j1")}, events={"j1": (0, events("j1", 0, 2))}, agents={"j1": {"router": agent}})
        )
        await store.acquire_lease("job:j1", "mn@a", 10_000)
        await store.put_doc("resource:limits", {"cpu": 2, "gpu": 0, "memory": None, "disk": None})
        await store.put_doc("node:mn@a:state", {"name": "mn@a"}, ttl_ms=15_000)
        await store.add_node("mn@a")
        with redis_server.client() as r:
            types = {key.decode(): r.type(key).decode() for key in r.keys(f"{ns}:*")}
            assert types == {
                f"{ns}:jobs": "set",
                f"{ns}:job:j1": "string",
                f"{ns}:job:j1:events": "list",
                f"{ns}:job:j1:agents": "set",
                f"{ns}:job:j1:agent:router": "string",
                f"{ns}:lease:job:j1": "string",
                f"{ns}:resource:limits": "string",
                f"{ns}:node:mn@a:state": "string",
                f"{ns}:nodes": "set",
            }
            assert r.smembers(f"{ns}:jobs") == {b"j1"}
            assert r.get(f"{ns}:job:j1") == dumps(job("j1"))
            assert [json.loads(e) for e in r.lrange(f"{ns}:job:j1:events", 0, -1)] == events("j1", 0, 2)
            assert r.smembers(f"{ns}:job:j1:agents") == {b"router"}
            assert json.loads(r.get(f"{ns}:job:j1:agent:router")) == agent
            assert r.get(f"{ns}:lease:job:j1") == b"mn@a"
            assert 0 < r.pttl(f"{ns}:lease:job:j1") <= 10_000
            assert 0 < r.pttl(f"{ns}:node:mn@a:state") <= 15_000
            assert r.pttl(f"{ns}:resource:limits") == -1
            assert r.smembers(f"{ns}:nodes") == {b"mn@a"}
    finally:
        await store.close()


async def test_delete_job_leaves_no_key_of_the_job(redis_server: Any, redis_namespace: str) -> None:
    ns = redis_namespace
    store = await open_store(redis_server.url, ns)
    try:
        for job_id in ("gone", "kept"):
            agents = {a: {"agent_id": a} for a in ("a", "b", "c")}
            await store.write_batch(
                Batch(jobs={job_id: job(job_id)}, events={job_id: (0, events(job_id, 0, 3))}, agents={job_id: agents})
            )
        await store.delete_job("gone")
        with redis_server.client() as r:
            keys = sorted(key.decode() for key in r.keys(f"{ns}:*"))
            assert not [key for key in keys if "gone" in key]
            assert keys == sorted(
                [f"{ns}:jobs", f"{ns}:job:kept", f"{ns}:job:kept:events", f"{ns}:job:kept:agents"]
                + [f"{ns}:job:kept:agent:{a}" for a in ("a", "b", "c")]
            )
            assert r.smembers(f"{ns}:jobs") == {b"kept"}
    finally:
        await store.close()


async def test_every_appended_event_is_published_with_the_stored_json(redis_server: Any, redis_namespace: str) -> None:
    store = await open_store(redis_server.url, redis_namespace)
    client = redis_server.client()
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    try:
        pubsub.subscribe(f"{redis_namespace}:channel:events:j")
        await store.append_events("j", 0, events("j", 0, 3))
        await store.append_events("j", 1, events("j", 1, 3))  # 1, 2 already stored: only 3 is new
        got: list[bytes] = []
        deadline = time.monotonic() + 5
        while len(got) < 4 and time.monotonic() < deadline:
            message = await asyncio.to_thread(pubsub.get_message, timeout=0.2)
            if message is not None:
                got.append(message["data"])
        with client as r:
            assert got == r.lrange(f"{redis_namespace}:job:j:events", 0, -1)
        assert len(got) == 4
    finally:
        pubsub.close()
        await store.close()


# ---- pub/sub across processes ------------------------------------------------------------------------------


async def test_subscriber_sees_other_writers_once_and_its_own_with_seq(redis_server: Any, redis_namespace: str) -> None:
    mine = await open_store(redis_server.url, redis_namespace)
    other = await open_store(redis_server.url, redis_namespace)
    try:
        await other.append_events("j", 0, events("j", 0, 1))  # before subscribing: not delivered
        sub = await mine.subscribe("j")
        await other.append_events("j", 1, events("j", 1, 2))
        await mine.append_events("j", 3, events("j", 3, 2))
        got = [await asyncio.wait_for(sub.__anext__(), 5) for _ in range(4)]
        remote = [event["n"] for seq, event in got if seq is None]
        local = [(seq, event["n"]) for seq, event in got if seq is not None]
        assert remote == [1, 2]
        assert local == [(3, 3), (4, 4)]
        with pytest.raises(TimeoutError):  # this process's own events do not come back as remote ones
            await asyncio.wait_for(sub.__anext__(), 0.3)
        await sub.close()
    finally:
        await mine.close()
        await other.close()


async def test_remote_events_resume_after_a_redis_restart(redis_server_factory: Callable[[], Any]) -> None:
    server = redis_server_factory()
    mine = await open_store(server.url, "x", backoff=(0.05, 0.2))
    other = await open_store(server.url, "x", backoff=(0.05, 0.2))
    try:
        first = await mine.subscribe("j")
        await first.close()  # the last subscription closes the pub/sub connection ...
        sub = await mine.subscribe("j")  # ... and the next one opens a new one
        await other.append_events("j", 0, events("j", 0, 1))
        assert (await asyncio.wait_for(sub.__anext__(), 5))[1]["n"] == 0
        await asyncio.to_thread(server.restart)
        deadline = time.monotonic() + 10
        n = 1
        while True:  # the listener reconnects and resubscribes: some event after the restart arrives
            await other.append_events("j", n, events("j", n, 1))
            n += 1
            try:
                seq, event = await asyncio.wait_for(sub.__anext__(), 0.2)
                break
            except TimeoutError:
                assert time.monotonic() < deadline, "no remote event arrived after the restart"
        assert seq is None
        assert event["n"] >= 1
        await sub.close()
    finally:
        await mine.close()
        await other.close()


# ---- faults ------------------------------------------------------------------------------------------------


async def test_open_fails_fast_when_redis_is_down(redis_server_factory: Callable[[], Any]) -> None:
    server = redis_server_factory()
    server.kill()
    store = RedisStore(f"redis://:secret@127.0.0.1:{server.port}/0", namespace="x")
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match="cannot reach Redis") as raised:
        await store.open()
    assert time.monotonic() - started < 3.5
    assert "secret" not in str(raised.value)
    assert f"127.0.0.1:{server.port}" in str(raised.value)


async def test_commands_give_up_with_store_unavailable(redis_server_factory: Callable[[], Any]) -> None:
    server = redis_server_factory()
    store = await open_store(server.url, "x", attempts=3, backoff=(0.01, 0.02))
    try:
        server.kill()
        with pytest.raises(StoreUnavailable, match="failed 3 times"):
            await store.put_job(job("j"))
    finally:
        await store.close()


async def test_restart_during_a_stream_of_batches_loses_and_repeats_nothing(
    redis_server_factory: Callable[[], Any],
) -> None:
    server = redis_server_factory()
    store = await open_store(server.url, "x", backoff=(0.05, 0.2))
    observer = await open_store(server.url, "x", backoff=(0.05, 0.2))
    sub = await store.subscribe("j")
    restarted = threading.Event()

    def restart() -> None:
        server.stop(save=True)  # a clean restart: SHUTDOWN SAVE, then the data loads again
        time.sleep(0.3)  # long enough for writes to fail and back off
        server.start()
        restarted.set()

    try:
        thread = None
        for n in range(40):
            if n == 10:
                thread = threading.Thread(target=restart)
                thread.start()
            await store.write_batch(Batch(jobs={"j": job("j")}, events={"j": (n * 25, events("j", n * 25, 25))}))
            await asyncio.sleep(0.01)
        assert thread is not None
        thread.join()
        assert restarted.is_set()
        stored = await observer.read_events("j")
        assert [event["n"] for event in stored] == list(range(1000))
        seqs = [(await asyncio.wait_for(sub.__anext__(), 5))[0] for _ in range(1000)]
        assert seqs == list(range(1000))
    finally:
        await sub.close()
        await store.close()
        await observer.close()


async def test_retry_after_an_unanswered_write_stores_nothing_twice(redis_server_factory: Callable[[], Any]) -> None:
    server = redis_server_factory()
    store = await open_store(server.url, "x", command_timeout_s=0.2, backoff=(0.05, 0.2))
    try:
        await store.append_events("j", 0, events("j", 0, 5))
        with server.client() as r:
            r.execute_command("CLIENT", "PAUSE", 700, "WRITE")  # the write times out, then may run
        await store.append_events("j", 5, events("j", 5, 5))
        await asyncio.sleep(0.8)
        assert [event["n"] for event in await store.read_events("j")] == list(range(10))
    finally:
        await store.close()


async def test_data_lost_by_a_crash_is_reported_as_a_gap(redis_server_factory: Callable[[], Any]) -> None:
    server = redis_server_factory()
    store = await open_store(server.url, "x", backoff=(0.05, 0.2))
    try:
        await store.append_events("j", 0, events("j", 0, 5))
        server.kill()  # no persistence configured: the events are gone
        server.start()
        with pytest.raises(StateError, match="at seq 5: the store holds 0 events"):
            await store.append_events("j", 5, events("j", 5, 1))
    finally:
        await store.close()
