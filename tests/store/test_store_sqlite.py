"""SQLite backend: file layout, JSON text documents, crash durability, sharing one file between stores."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mncore._util import dumps_str
from mncore.errors import StoreUnavailable
from mncore.store import Batch, SQLiteStore


async def test_creates_the_file_in_wal_mode_with_json_text(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "dir" / "store.sqlite3"
    record = {"job_id": "j", "status": "running", "result": {"é": [1, None]}}
    async with SQLiteStore(path) as store:
        await store.write_batch(Batch(jobs={"j": record}, events={"j": (0, [{"type": "job_pending", "job_id": "j"}])}))
        await store.put_doc("resource:limits", {"cpu": 1})
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        body, kind = conn.execute("SELECT body, typeof(body) FROM jobs WHERE job_id = 'j'").fetchone()
        assert (body, kind) == (dumps_str(record), "text")  # the same JSON document Redis holds
        chunks = conn.execute("SELECT job_id, first_seq, n, body FROM event_chunks").fetchall()
        assert [c[:3] for c in chunks] == [("j", 0, 1)]  # one row per run of events, a JSON array
        assert json.loads(chunks[0][3]) == [{"type": "job_pending", "job_id": "j"}]
        assert json.loads(conn.execute("SELECT body FROM docs").fetchone()[0]) == {"cpu": 1}
    conn.close()


async def test_open_reports_an_unusable_path(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    store = SQLiteStore(tmp_path / "file" / "store.sqlite3")
    with pytest.raises(StoreUnavailable, match="cannot open the SQLite store"):
        await store.open()
    with pytest.raises(StoreUnavailable, match="not open"):
        await store.get_job("j")


async def test_a_committed_batch_survives_a_killed_process(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    child = textwrap.dedent(
        f"""
        import asyncio, os, signal
        from mncore.store import Batch, SQLiteStore

        async def main():
            store = SQLiteStore({str(path)!r})
            await store.open()
            events = [{{"type": "tick", "job_id": "j", "n": n}} for n in range(500)]
            await store.write_batch(Batch(jobs={{"j": {{"job_id": "j"}}}}, events={{"j": (0, events)}}))
            os.kill(os.getpid(), signal.SIGKILL)  # no close, no checkpoint

        asyncio.run(main())
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    result = subprocess.run([sys.executable, "-c", child], env=env, capture_output=True, timeout=60)
    assert result.returncode == -9, result.stderr.decode()
    async with SQLiteStore(path) as store:
        assert await store.get_job("j") == {"job_id": "j"}
        assert await store.count_events("j") == 500


async def test_two_stores_on_one_file_share_leases_and_data(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    async with SQLiteStore(path) as a, SQLiteStore(path) as b:
        assert await a.acquire_lease("cluster:leader", "a", 10_000)
        assert not await b.acquire_lease("cluster:leader", "b", 10_000)
        assert await b.lease_owner("cluster:leader") == "a"
        await a.append_events("j", 0, [{"n": 0}, {"n": 1}])
        await b.append_events("j", 1, [{"n": 1}, {"n": 2}])
        assert await a.read_events("j") == [{"n": 0}, {"n": 1}, {"n": 2}]


def test_synchronous_must_be_a_sqlite_level(tmp_path: Path) -> None:
    from mncore.errors import ConfigError

    with pytest.raises(ConfigError, match="synchronous"):
        SQLiteStore(tmp_path / "s.sqlite3", synchronous="sometimes")


async def test_events_are_stored_in_chunks_and_read_across_them(tmp_path: Path) -> None:
    from mncore.store import sqlite as backend

    events = [{"type": "e", "job_id": "j", "i": i} for i in range(2 * backend.CHUNK + 5)]
    async with SQLiteStore(tmp_path / "s.sqlite3") as store:
        await store.write_batch(Batch(events={"j": (0, events[:7])}))
        await store.write_batch(Batch(events={"j": (0, events)}))  # a re-sent batch: only the rest is added
        assert await store.count_events("j") == len(events)
        assert await store.read_events("j") == events
        assert (
            await store.read_events("j", backend.CHUNK - 2, backend.CHUNK + 3)
            == events[backend.CHUNK - 2 : backend.CHUNK + 3]
        )
        assert await store.read_events("j", -3) == events[-3:]
    with sqlite3.connect(tmp_path / "s.sqlite3") as conn:
        sizes = [n for (n,) in conn.execute("SELECT n FROM event_chunks ORDER BY first_seq")]
    conn.close()
    assert sizes == [7, backend.CHUNK - 7, backend.CHUNK, 5]  # the stored head was cut off the re-sent chunk
