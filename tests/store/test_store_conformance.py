"""The Store contract, run against every backend (memory, SQLite, Redis) through the ``store`` fixture."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from mncore.errors import RetryLaterError, StateError
from mncore.store import Batch, Store

StoreFactory = Callable[..., Awaitable[Store]]


def job(job_id: str, status: str = "running", **extra: Any) -> dict[str, Any]:
    return {"job_id": job_id, "graph_id": "g", "job_name": "demo", "status": status, "daemon": False, **extra}


def events(job_id: str, first: int, count: int) -> list[dict[str, Any]]:
    return [
        {"type": "tick", "job_id": job_id, "timestamp": "2024-01-01T00:00:00.000Z", "n": first + i}
        for i in range(count)
    ]


def snapshot(agent_id: str, processed: int = 0) -> dict[str, Any]:
    return {"agent_id": agent_id, "agent_type": "router", "processed_messages": processed, "current_state": {"k": [1]}}


def numbers(stored: list[dict[str, Any]]) -> list[int]:
    return [event["n"] for event in stored]


# ---- jobs ---------------------------------------------------------------------------------------


async def test_job_records_round_trip(store: Store) -> None:
    assert await store.get_job("a") is None
    await store.put_job(job("a", result={"nested": {"x": [1, 2.5, None, "é"]}}))
    await store.put_job(job("b"))
    await store.put_job(job("a", "completed"))  # latest record wins
    assert (await store.get_job("a")) == job("a", "completed")
    assert await store.job_ids() == ["a", "b"]
    assert [r["job_id"] for r in await store.get_jobs(["b", "missing", "a"])] == ["b", "a"]
    assert await store.get_jobs([]) == []


# ---- events ---------------------------------------------------------------------------------------


async def test_events_append_in_order_and_count(store: Store) -> None:
    assert await store.count_events("j") == 0
    assert await store.read_events("j") == []
    await store.append_events("j", 0, events("j", 0, 3))
    await store.append_events("j", 3, events("j", 3, 2))
    assert await store.count_events("j") == 5
    assert numbers(await store.read_events("j")) == [0, 1, 2, 3, 4]
    assert await store.read_events("j") == events("j", 0, 5)


@pytest.mark.parametrize("start", [0, 2, 6, 7, 9, -1, -3, -7, -25])
@pytest.mark.parametrize("stop", [None, 0, 1, 4, 7, 30, -1, -4, -7, -30])
async def test_read_events_has_python_slice_semantics(store: Store, start: int, stop: int | None) -> None:
    await store.append_events("j", 0, events("j", 0, 7))
    assert numbers(await store.read_events("j", start, stop)) == list(range(7))[start:stop]


async def test_rewriting_a_batch_stores_no_event_twice(store: Store) -> None:
    batch = Batch(jobs={"j": job("j")}, events={"j": (0, events("j", 0, 10))}, agents={"j": {"a": snapshot("a")}})
    await store.write_batch(batch)
    await store.write_batch(batch)  # a retry after a lost reply
    await store.append_events("j", 5, events("j", 5, 10))  # overlaps 5..9, appends 10..14
    await store.append_events("j", 0, events("j", 0, 3))  # entirely stored already
    assert numbers(await store.read_events("j")) == list(range(15))


async def test_append_past_the_end_is_refused(store: Store) -> None:
    await store.append_events("j", 0, events("j", 0, 2))
    with pytest.raises(StateError, match="at seq 5: the store holds 2 events"):
        await store.append_events("j", 5, events("j", 5, 1))
    assert await store.count_events("j") == 2
    with pytest.raises(ValueError, match="first seq"):
        await store.append_events("j", -1, events("j", 0, 1))


# ---- batches ----------------------------------------------------------------------------------------


async def test_write_batch_writes_every_part(store: Store) -> None:
    batch = Batch()
    batch.add_job(job("j1"))
    batch.add_job(job("j2", "pending"))
    batch.add_events("j1", 0, events("j1", 0, 1000))
    batch.add_events("j2", 0, events("j2", 0, 3))
    batch.add_agent("j1", snapshot("router"))
    batch.add_agent("j1", snapshot("exec"))
    batch.add_agent("j2", snapshot("only"))
    await store.write_batch(batch)
    assert await store.job_ids() == ["j1", "j2"]
    assert await store.count_events("j1") == 1000
    assert numbers(await store.read_events("j2")) == [0, 1, 2]
    assert [a["agent_id"] for a in await store.get_agents("j1")] == ["exec", "router"]
    assert await store.get_agent("j2", "only") == snapshot("only")


async def test_write_batch_is_all_or_nothing(store: Store) -> None:
    await store.append_events("ok", 0, events("ok", 0, 1))
    batch = Batch(
        jobs={"new": job("new")},
        events={"ok": (1, events("ok", 1, 2)), "gap": (4, events("gap", 4, 1))},
        agents={"new": {"a": snapshot("a")}},
    )
    with pytest.raises(StateError, match="job gap"):
        await store.write_batch(batch)
    assert await store.get_job("new") is None
    assert await store.job_ids() == []
    assert await store.count_events("ok") == 1
    assert await store.count_events("gap") == 0
    assert await store.get_agents("new") == []


async def test_empty_batch_is_a_no_op(store: Store) -> None:
    await store.write_batch(Batch())
    await store.write_batch(Batch(events={"j": (0, [])}))
    assert await store.job_ids() == []


async def test_concurrent_batches_all_land(store: Store) -> None:
    async def writer(job_id: str) -> None:
        for first in range(0, 50, 10):
            await store.write_batch(
                Batch(jobs={job_id: job(job_id)}, events={job_id: (first, events(job_id, first, 10))})
            )

    await asyncio.gather(*(writer(f"j{i}") for i in range(8)))
    assert await store.job_ids() == [f"j{i}" for i in range(8)]
    for i in range(8):
        assert numbers(await store.read_events(f"j{i}")) == list(range(50))


# ---- agents -------------------------------------------------------------------------------------------


async def test_agent_snapshots_latest_wins(store: Store) -> None:
    await store.put_agents("j", [snapshot("b"), snapshot("a")])
    await store.put_agents("j", [snapshot("a", processed=7)])
    assert [(a["agent_id"], a["processed_messages"]) for a in await store.get_agents("j")] == [("a", 7), ("b", 0)]
    assert await store.get_agent("j", "a") == snapshot("a", processed=7)
    assert await store.get_agent("j", "zzz") is None
    assert await store.get_agents("other") == []


# ---- delete ---------------------------------------------------------------------------------------------


async def test_delete_job_removes_everything_of_that_job_only(store: Store) -> None:
    for job_id in ("gone", "kept"):
        await store.write_batch(
            Batch(
                jobs={job_id: job(job_id)},
                events={job_id: (0, events(job_id, 0, 3))},
                agents={job_id: {"a": snapshot("a")}},
            )
        )
    await store.delete_job("gone")
    await store.delete_job("never-existed")
    assert await store.get_job("gone") is None
    assert await store.count_events("gone") == 0
    assert await store.get_agents("gone") == []
    assert await store.get_agent("gone", "a") is None
    assert await store.job_ids() == ["kept"]
    assert await store.count_events("kept") == 3
    # the id can be used again, from seq 0
    await store.append_events("gone", 0, events("gone", 0, 1))
    assert await store.count_events("gone") == 1


# ---- leases ---------------------------------------------------------------------------------------------


async def test_lease_acquire_renew_release(store: Store) -> None:
    assert await store.lease_owner("job:j") is None
    assert await store.acquire_lease("job:j", "node-a", 10_000)
    assert not await store.acquire_lease("job:j", "node-b", 10_000)
    assert not await store.acquire_lease("job:j", "node-a", 10_000)  # set-if-absent, even for the holder
    assert await store.lease_owner("job:j") == "node-a"
    assert await store.renew_lease("job:j", "node-a", 10_000)
    assert not await store.renew_lease("job:j", "node-b", 10_000)
    assert not await store.release_lease("job:j", "node-b")
    assert await store.lease_owner("job:j") == "node-a"
    assert await store.release_lease("job:j", "node-a")
    assert not await store.release_lease("job:j", "node-a")
    assert await store.lease_owner("job:j") is None
    assert await store.acquire_lease("job:j", "node-b", 10_000)


async def test_lease_expires(store: Store) -> None:
    assert await store.acquire_lease("cluster:leader", "a", 100)
    await asyncio.sleep(0.25)
    assert await store.lease_owner("cluster:leader") is None
    assert not await store.renew_lease("cluster:leader", "a", 100)
    assert not await store.release_lease("cluster:leader", "a")
    assert await store.acquire_lease("cluster:leader", "b", 10_000)
    assert await store.lease_owner("cluster:leader") == "b"


async def test_renewal_extends_a_lease(store: Store) -> None:
    assert await store.acquire_lease("l", "a", 300)
    await asyncio.sleep(0.15)
    assert await store.renew_lease("l", "a", 10_000)
    await asyncio.sleep(0.3)
    assert await store.lease_owner("l") == "a"


async def test_lease_ttl_must_be_positive(store: Store) -> None:
    with pytest.raises(ValueError, match="ttl_ms"):
        await store.acquire_lease("l", "a", 0)


# ---- documents and nodes --------------------------------------------------------------------------------


async def test_documents_round_trip_and_expire(store: Store) -> None:
    limits = {"cpu": 4, "gpu": 0, "memory": "8Gi", "disk": None}
    assert await store.get_doc("resource:limits") is None
    await store.put_doc("resource:limits", limits)
    assert await store.get_doc("resource:limits") == limits
    await store.put_doc("node:n1:state", {"name": "n1"}, ttl_ms=100)
    assert await store.get_doc("node:n1:state") == {"name": "n1"}
    await asyncio.sleep(0.25)
    assert await store.get_doc("node:n1:state") is None
    await store.put_doc("node:n1:state", {"name": "n1"}, ttl_ms=100)
    await store.put_doc("node:n1:state", {"name": "n1", "v": 2})  # no ttl: lives on
    await asyncio.sleep(0.25)
    assert await store.get_doc("node:n1:state") == {"name": "n1", "v": 2}
    await store.delete_doc("resource:limits")
    await store.delete_doc("resource:limits")
    assert await store.get_doc("resource:limits") is None


@pytest.mark.parametrize("key", ["", "jobs", "nodes", "job:x", "lease:job:x", "channel:events:x"])
async def test_document_keys_cannot_shadow_the_job_layout(store: Store, key: str) -> None:
    with pytest.raises(ValueError, match="document key"):
        await store.put_doc(key, {})


async def test_node_set(store: Store) -> None:
    assert await store.node_names() == []
    for name in ("mn@b", "mn@a", "mn@b"):
        await store.add_node(name)
    assert await store.node_names() == ["mn@a", "mn@b"]


# ---- pub/sub ----------------------------------------------------------------------------------------------


async def next_item(sub: Any) -> Any:
    return await asyncio.wait_for(sub.__anext__(), 5)


async def test_subscribe_gets_events_written_after_it(store: Store) -> None:
    await store.append_events("j", 0, events("j", 0, 2))  # before: never delivered
    sub = await store.subscribe("j")
    other = await store.subscribe("other")
    async with sub, other:
        await store.write_batch(Batch(events={"j": (2, events("j", 2, 3)), "x": (0, events("x", 0, 1))}))
        await store.write_batch(Batch(events={"j": (2, events("j", 2, 4))}))  # rewrite + one new
        got = [await next_item(sub) for _ in range(4)]
        assert [(seq, event["n"]) for seq, event in got] == [(2, 2), (3, 3), (4, 4), (5, 5)]
        with pytest.raises(TimeoutError):  # nothing else: no duplicates, nothing of other jobs
            await asyncio.wait_for(sub.__anext__(), 0.2)
    with pytest.raises(StopAsyncIteration):
        await next_item(sub)


async def test_closed_subscription_and_closed_store_end_iteration(store_factory: StoreFactory) -> None:
    store = await store_factory()
    sub = await store.subscribe("j")

    async def drain() -> list[int]:
        return [seq async for seq, _ in sub if seq is not None]

    task = asyncio.create_task(drain())
    await store.append_events("j", 0, events("j", 0, 2))
    await asyncio.sleep(0.05)
    await store.close()
    assert await asyncio.wait_for(task, 5) == [0, 1]
    await sub.close()  # after the store closed: still fine


async def test_slow_subscriber_is_dropped_not_buffered(store_factory: StoreFactory) -> None:
    store = await store_factory(subscription_limit=3)
    sub = await store.subscribe("j")
    await store.append_events("j", 0, events("j", 0, 5))
    await store.append_events("j", 5, events("j", 5, 1))
    assert sub.overflowed
    assert [(await next_item(sub))[0] for _ in range(3)] == [0, 1, 2]
    with pytest.raises(RetryLaterError, match="fell more than 3 events behind"):
        await next_item(sub)
    await sub.close()


# ---- persistence --------------------------------------------------------------------------------------------


async def test_data_survives_reopening(backend: str, store_factory: StoreFactory) -> None:
    if backend == "memory":
        pytest.skip("the memory store keeps nothing")
    first = await store_factory()
    await first.write_batch(
        Batch(jobs={"j": job("j")}, events={"j": (0, events("j", 0, 4))}, agents={"j": {"a": snapshot("a")}})
    )
    await first.put_doc("resource:limits", {"cpu": 2})
    await first.add_node("n")
    await first.close()
    second = await store_factory()
    assert await second.get_job("j") == job("j")
    assert numbers(await second.read_events("j", -2)) == [2, 3]
    assert await second.get_agents("j") == [snapshot("a")]
    assert await second.get_doc("resource:limits") == {"cpu": 2}
    assert await second.node_names() == ["n"]
    await second.append_events("j", 2, events("j", 2, 4))  # idempotent across processes too
    assert numbers(await second.read_events("j")) == list(range(6))
