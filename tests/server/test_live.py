"""``mncore.live.follow_events``: replay then live, no gaps or duplicates, heartbeats, overflow recovery.

(The follower lives in mncore; it is tested here beside its two consumers, SSE and gRPC streams.)
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from mn_server_testlib import make_settings, quick_job, waiting_job

from mncore.errors import JobNotFound
from mncore.live import LiveItem, is_heartbeat
from mncore.runtime import Runtime
from mncore.store import SQLiteStore


@pytest.fixture
async def rt(tmp_path: Path) -> AsyncIterator[Runtime]:
    async with Runtime(make_settings(tmp_path)) as runtime:
        yield runtime


async def collect(items: AsyncIterator[LiveItem], timeout: float = 10.0) -> list[LiveItem]:
    async def drain() -> list[LiveItem]:
        return [item async for item in items]

    return await asyncio.wait_for(drain(), timeout)


def assert_contiguous(items: list[LiveItem], start: int = 0) -> None:
    indexes = [i for i, _ in items if i is not None]
    assert indexes == list(range(start, start + len(indexes)))


async def test_finished_job_replay_limit_and_after(rt: Runtime) -> None:
    job_id, _ = await rt.run_manifest(quick_job(), wait=True, timeout=10)
    stored = await rt.events(job_id)
    items = await collect(rt.stream_events(job_id))
    assert [e for _, e in items] == stored
    assert_contiguous(items)
    assert (await collect(rt.stream_events(job_id, after=3)))[0][0] == 4
    assert [i for i, _ in await collect(rt.stream_events(job_id, limit=2))] == [len(stored) - 2, len(stored) - 1]
    assert await collect(rt.stream_events(job_id, replay=False)) == []


async def test_live_follow_without_gaps(rt: Runtime) -> None:
    job_id = await rt.run_manifest(waiting_job())
    stream = rt.stream_events(job_id, heartbeat_s=0.05)
    first = await anext(stream)
    assert first[0] == 0
    reader = asyncio.ensure_future(collect(stream))
    await asyncio.sleep(0.2)  # silence: heartbeats
    await rt.send_message(job_id, "r", {"n": 2})
    rest = await reader
    events = [first, *[item for item in rest if not is_heartbeat(item)]]
    assert_contiguous(events)
    assert events[-1][1]["type"] == "job_completed"
    assert [e for _, e in events] == await rt.events(job_id)
    beats = [item for item in rest if is_heartbeat(item)]
    assert beats and beats[0][1]["type"] == "stream_heartbeat" and beats[0][1]["job_id"] == job_id


async def test_follow_false_stops_after_replay(rt: Runtime) -> None:
    job_id = await rt.run_manifest(waiting_job())
    await asyncio.sleep(0.1)
    items = await collect(rt.stream_events(job_id, follow=False))
    assert items and items[-1][1]["type"] != "job_completed"
    await rt.cancel(job_id)


async def test_unknown_job(rt: Runtime) -> None:
    with pytest.raises(JobNotFound):
        await anext(rt.stream_events("nope"))


async def test_doorbell_rereads_without_duplicates(rt: Runtime) -> None:
    """An item of unknown position (another process's event) triggers a re-read, never a duplicate."""
    job_id = await rt.run_manifest(waiting_job())
    stream = rt.stream_events(job_id, heartbeat_s=None)
    seen = [await anext(stream)]
    rt.store._hub.deliver(job_id, (None, {"type": "foreign"}))  # a doorbell with nothing new behind it
    await rt.send_message(job_id, "r", {"n": 2})
    seen += await collect(stream)
    assert_contiguous(seen)
    assert all(e["type"] != "foreign" for _, e in seen)


async def test_overflowed_subscription_is_replaced(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    store = SQLiteStore(tmp_path / "small.sqlite3", subscription_limit=2)
    async with Runtime(settings, store=store) as rt:
        job_id = await rt.run_manifest(waiting_job())
        stream = rt.stream_events(job_id, heartbeat_s=None)
        seen: list[Any] = [await anext(stream)]
        await rt.send_message(job_id, "r", {"n": 2})
        await rt.wait_for_job(job_id, 10)  # every event published while the consumer is away
        seen += await collect(stream)
    assert_contiguous(seen)
    assert seen[-1][1]["type"] == "job_completed"
