"""SQLiteStore: the embedded default, one file, the same JSON documents the Redis backend holds.

Threads: every write runs on one dedicated writer thread with its own connection, every read on
one reader thread with another, so the event loop never blocks on SQLite and reads never wait
behind a commit (WAL). Documents are encoded on the loop thread, before the hand-off, so a write
captures the caller's dicts as they were at the call.

Durability: WAL with ``synchronous=NORMAL`` (the default). A committed transaction is in the WAL
file when ``write_batch`` returns, so it survives a crash or kill of this process; a power loss
or OS crash may lose the last transactions. ``synchronous="FULL"`` (``sqlite:///path?synchronous=FULL``)
also fsyncs the WAL on every commit, for power-loss durability at a cost per batch.

Tables: ``jobs`` (the job set and records), ``event_chunks`` (a job's events in runs of at most
``CHUNK`` consecutive events, one JSON array per row, keyed ``(job_id, first_seq)``: one encode
call and one row per batch instead of one per event; a re-written batch appends only what is not
stored yet, so nothing is stored twice), ``agents``, ``leases`` and ``docs`` (``expires_at`` in
wall-clock ms: several processes may share the file), ``nodes``.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from .._util import dumps, dumps_str, loads
from ..errors import ConfigError, StoreUnavailable
from .base import Batch, Doc, Store, gap_error, wall_ms

__all__ = ["SQLiteStore"]

T = TypeVar("T")

_SCHEMA = """
BEGIN;
CREATE TABLE IF NOT EXISTS jobs (job_id TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS event_chunks (
    job_id TEXT NOT NULL, first_seq INTEGER NOT NULL, n INTEGER NOT NULL, body BLOB NOT NULL,
    PRIMARY KEY (job_id, first_seq));
CREATE TABLE IF NOT EXISTS agents (
    job_id TEXT NOT NULL, agent_id TEXT NOT NULL, body TEXT NOT NULL, PRIMARY KEY (job_id, agent_id));
CREATE TABLE IF NOT EXISTS leases (name TEXT PRIMARY KEY, owner TEXT NOT NULL, expires_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS docs (key TEXT PRIMARY KEY, body TEXT NOT NULL, expires_at INTEGER);
CREATE TABLE IF NOT EXISTS nodes (name TEXT PRIMARY KEY);
PRAGMA user_version = 2;
COMMIT;
"""

_SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")

_Conn = sqlite3.Connection
_Group = tuple[str, int, list[tuple[int, bytes]]]  # job, first seq, [(count, JSON array)]
CHUNK = 1000
_Row2 = tuple[str, str]
_Row3 = tuple[str, str, str]


@contextmanager
def _transaction(conn: _Conn) -> Iterator[None]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if conn.in_transaction:  # SQLite may already have rolled back (e.g. disk full)
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _stored_count(conn: _Conn, job_id: str) -> int:
    # Chunks are contiguous from seq 0: the last one ends where the stored events end (one index probe).
    row = conn.execute(
        "SELECT first_seq + n FROM event_chunks WHERE job_id = ? ORDER BY first_seq DESC LIMIT 1", (job_id,)
    ).fetchone()
    return int(row[0]) if row else 0


def _encode_chunks(events: list[Doc]) -> list[tuple[int, bytes]]:
    return [(len(part), dumps(part)) for part in (events[i : i + CHUNK] for i in range(0, len(events), CHUNK))]


def _new_rows(conn: _Conn, job_id: str, first_seq: int, chunks: list[tuple[int, bytes]]) -> list[tuple[Any, ...]]:
    """The chunk rows to insert: whatever of the group is already stored (a retried batch) is skipped."""
    stored = _stored_count(conn, job_id)
    if first_seq > stored:
        raise gap_error(job_id, first_seq, stored)
    rows: list[tuple[Any, ...]] = []
    seq = first_seq
    for count, body in chunks:
        if seq + count > stored:
            if seq < stored:  # partly stored: keep the tail (rare: a batch re-sent after a failed write)
                tail = loads(body)[stored - seq :]
                rows.append((job_id, stored, len(tail), dumps(tail)))
            else:
                rows.append((job_id, seq, count, body))
        seq += count
    return rows


def _apply_batch(conn: _Conn, jobs: list[_Row2], groups: list[_Group], agents: list[_Row3]) -> None:
    with _transaction(conn):
        rows: list[tuple[Any, ...]] = []
        for job_id, first_seq, chunks in groups:
            rows.extend(_new_rows(conn, job_id, first_seq, chunks))
        conn.executemany("INSERT OR REPLACE INTO jobs VALUES (?, ?)", jobs)
        conn.executemany("INSERT INTO event_chunks VALUES (?, ?, ?, ?)", rows)
        conn.executemany("INSERT OR REPLACE INTO agents VALUES (?, ?, ?)", agents)


def _read_range(conn: _Conn, job_id: str, start: int, stop: int | None) -> list[Doc]:
    """Python slice semantics over the job's events, in one read transaction."""
    conn.execute("BEGIN")
    try:
        count = _stored_count(conn, job_id)
        lo, hi, _ = slice(start, stop).indices(count)
        if lo >= hi:
            return []
        out: list[Doc] = []
        query = (
            "SELECT first_seq, body FROM event_chunks WHERE job_id = ? AND first_seq > ? AND first_seq < ?"
            " ORDER BY first_seq"
        )
        for first, body in conn.execute(query, (job_id, lo - CHUNK, hi)):
            part = loads(body)
            out.extend(part[max(lo - first, 0) : hi - first])
        return out
    finally:
        conn.execute("COMMIT")


class SQLiteStore(Store):
    """The Store contract in one SQLite file (created with its parent directories on open)."""

    def __init__(self, path: str | Path, *, synchronous: str = "NORMAL", subscription_limit: int = 10_000) -> None:
        super().__init__(f"sqlite:///{path}", subscription_limit=subscription_limit)
        if synchronous.upper() not in _SYNCHRONOUS:
            raise ConfigError(
                f"MN_STORE_URL: synchronous must be one of {', '.join(_SYNCHRONOUS)} (got {synchronous!r})"
            )
        self.path = Path(path)
        self.synchronous = synchronous.upper()
        self._writer: ThreadPoolExecutor | None = None
        self._reader: ThreadPoolExecutor | None = None
        self._wconn: _Conn | None = None
        self._rconn: _Conn | None = None

    # ---- threads --------------------------------------------------------------------------------

    def _connect(self, writer: bool) -> _Conn:
        conn = sqlite3.connect(self.path, isolation_level=None)
        try:
            conn.execute("PRAGMA busy_timeout = 5000")
            if writer:
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute(f"PRAGMA synchronous = {self.synchronous}")
                conn.executescript(_SCHEMA)
            else:
                conn.execute("PRAGMA query_only = 1")
        except BaseException:
            conn.close()
            raise
        return conn

    async def _open(self) -> None:
        if self._writer is not None:
            return
        loop = asyncio.get_running_loop()
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mn-store-writer")
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mn-store-reader")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._wconn = await loop.run_in_executor(self._writer, self._connect, True)
            self._rconn = await loop.run_in_executor(self._reader, self._connect, False)
        except (OSError, sqlite3.Error) as exc:
            await self._close()
            raise StoreUnavailable(
                f"cannot open the SQLite store {self.path}: {exc}; check MN_STORE_URL / MN_DATA_DIR "
                "(the directory must be writable)"
            ) from exc

    async def _close(self) -> None:
        loop = asyncio.get_running_loop()
        for executor, conn in ((self._writer, self._wconn), (self._reader, self._rconn)):
            if executor is None:
                continue
            if conn is not None:
                await loop.run_in_executor(executor, conn.close)
            await loop.run_in_executor(None, executor.shutdown)
        self._writer = self._reader = None
        self._wconn = self._rconn = None

    async def _call(self, writer: bool, fn: Callable[..., T], *args: Any) -> T:
        executor, conn = (self._writer, self._wconn) if writer else (self._reader, self._rconn)
        if executor is None or conn is None:
            raise StoreUnavailable(f"{self!r} is not open; await store.open() first")
        try:
            return await asyncio.get_running_loop().run_in_executor(executor, fn, conn, *args)
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable(f"SQLite store {self.path}: {exc}") from exc

    async def _one(self, sql: str, *params: Any) -> Any:
        """First column of the first row (reader thread), or ``None``."""

        def query(conn: _Conn) -> Any:
            row = conn.execute(sql, params).fetchone()
            return None if row is None else row[0]

        return await self._call(False, query)

    async def _column(self, sql: str, *params: Any) -> list[Any]:
        """First column of every row (reader thread); one mapping argument binds named parameters."""
        bind = params[0] if len(params) == 1 and isinstance(params[0], dict) else params
        return await self._call(False, lambda conn: [row[0] for row in conn.execute(sql, bind)])

    async def _exec(self, sql: str, *params: Any) -> int:
        """Run one statement on the writer thread; its row count."""
        return await self._call(True, lambda conn: conn.execute(sql, params).rowcount)

    # ---- jobs, events, agents ---------------------------------------------------------------------

    async def _write_batch(self, batch: Batch) -> None:
        jobs = [(job_id, dumps_str(record)) for job_id, record in batch.jobs.items()]
        groups = [(job_id, first, _encode_chunks(events)) for job_id, (first, events) in batch.events.items()]
        agents = [
            (job_id, agent_id, dumps_str(snapshot))
            for job_id, snapshots in batch.agents.items()
            for agent_id, snapshot in snapshots.items()
        ]
        await self._call(True, _apply_batch, jobs, groups, agents)

    async def _get_jobs(self, job_ids: list[str]) -> list[Doc | None]:
        def query(conn: _Conn) -> list[Doc | None]:
            found: dict[str, Doc] = {}
            for i in range(0, len(job_ids), 500):  # SQLite caps bound parameters per statement
                chunk = job_ids[i : i + 500]
                marks = ",".join("?" * len(chunk))
                for job_id, body in conn.execute(f"SELECT job_id, body FROM jobs WHERE job_id IN ({marks})", chunk):
                    found[job_id] = loads(body)
            return [found.get(job_id) for job_id in job_ids]

        return await self._call(False, query)

    async def _job_ids(self) -> list[str]:
        return await self._column("SELECT job_id FROM jobs")

    async def _read_events(self, job_id: str, start: int, stop: int | None) -> list[Doc]:
        return await self._call(False, _read_range, job_id, start, stop)

    async def _count_events(self, job_id: str) -> int:
        return await self._call(False, _stored_count, job_id)

    async def _get_agents(self, job_id: str) -> list[Doc]:
        bodies = await self._column("SELECT body FROM agents WHERE job_id = ?", job_id)
        return [loads(body) for body in bodies]

    async def _get_agent(self, job_id: str, agent_id: str) -> Doc | None:
        body = await self._one("SELECT body FROM agents WHERE job_id = ? AND agent_id = ?", job_id, agent_id)
        return None if body is None else loads(body)

    async def _delete_job(self, job_id: str) -> None:
        def delete(conn: _Conn) -> None:
            with _transaction(conn):
                for table in ("jobs", "event_chunks", "agents"):
                    conn.execute(f"DELETE FROM {table} WHERE job_id = ?", (job_id,))

        await self._call(True, delete)

    # ---- leases -------------------------------------------------------------------------------------

    async def _acquire_lease(self, name: str, owner: str, ttl_ms: int) -> bool:
        now = wall_ms()
        taken = await self._exec(
            "INSERT INTO leases VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE"
            " SET owner = excluded.owner, expires_at = excluded.expires_at WHERE leases.expires_at <= ?",
            name,
            owner,
            now + ttl_ms,
            now,
        )
        return taken == 1

    async def _renew_lease(self, name: str, owner: str, ttl_ms: int) -> bool:
        now = wall_ms()
        sql = "UPDATE leases SET expires_at = ? WHERE name = ? AND owner = ? AND expires_at > ?"
        return await self._exec(sql, now + ttl_ms, name, owner, now) == 1

    async def _release_lease(self, name: str, owner: str) -> bool:
        sql = "DELETE FROM leases WHERE name = ? AND owner = ? AND expires_at > ?"
        return await self._exec(sql, name, owner, wall_ms()) == 1

    async def _lease_owner(self, name: str) -> str | None:
        owner = await self._one("SELECT owner FROM leases WHERE name = ? AND expires_at > ?", name, wall_ms())
        return None if owner is None else str(owner)

    # ---- documents and nodes ------------------------------------------------------------------------

    async def _put_doc(self, key: str, doc: Doc, ttl_ms: int | None) -> None:
        now, body = wall_ms(), dumps_str(doc)

        def put(conn: _Conn) -> None:
            with _transaction(conn):
                # Expired rows are swept here (node state is refreshed every few seconds).
                conn.execute("DELETE FROM docs WHERE expires_at <= ?", (now,))
                conn.execute("DELETE FROM leases WHERE expires_at <= ?", (now,))
                expires_at = None if ttl_ms is None else now + ttl_ms
                conn.execute("INSERT OR REPLACE INTO docs VALUES (?, ?, ?)", (key, body, expires_at))

        await self._call(True, put)

    async def _get_doc(self, key: str) -> Doc | None:
        sql = "SELECT body FROM docs WHERE key = ? AND (expires_at IS NULL OR expires_at > ?)"
        body = await self._one(sql, key, wall_ms())
        return None if body is None else loads(body)

    async def _delete_doc(self, key: str) -> None:
        await self._exec("DELETE FROM docs WHERE key = ?", key)

    async def _add_node(self, name: str) -> None:
        await self._exec("INSERT OR IGNORE INTO nodes VALUES (?)", name)

    async def _node_names(self) -> list[str]:
        return await self._column("SELECT name FROM nodes")
