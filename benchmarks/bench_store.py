"""Store writes under a running job, on Redis and on the embedded SQLite store, side by side in one run.

(a) Events per second appended through the store while a router-chain job runs (5 routers + a
    sensor, 6 ``agent_message_received`` events per message), from submit until the job's
    terminal state is durable: *batched* is the runtime's write-behind as it runs (every event,
    snapshot and record of a loop tick in one ``Store.write_batch``); *unbatched* collects the same
    way but writes every event with its own ``write_batch`` (records and snapshots still once per
    collection). Target: batched >= 5x unbatched, on each backend.
(b) The router-chain throughput of ``bench_chain`` (messages/s end to end, persistence on) with
    the store on Redis vs on SQLite. Target: Redis >= 50% of SQLite.

A private redis-server (no persistence: ``--save ""``, ``--appendonly no``) runs on a free
loopback port for the duration and is shut down at the end; its data is flushed between runs.
SQLite runs use a fresh file in a temporary data dir (``synchronous=NORMAL``, the default).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass

import redis
from _harness import Report, parser
from bench_chain import chain, one_run

from mncore import _loop
from mncore.config import Settings
from mncore.persistence import WriteBehind
from mncore.runtime import Runtime
from mncore.store.base import Batch


class PerEventWrites(WriteBehind):
    """The unbatched baseline: the write-behind's collection, then one ``write_batch`` per event."""

    writes = 0

    async def flush(self) -> None:
        async with self._lock:
            batch = self._collect()
            for job_id, (first_seq, events) in batch.events.items():
                for offset, event in enumerate(events):
                    await self.store.write_batch(Batch(events={job_id: (first_seq + offset, [event])}))
                    self.writes += 1
            rest = Batch(jobs=batch.jobs, agents=batch.agents)
            if not rest.is_empty():
                await self.store.write_batch(rest)
                self.writes += 1


class PrivateRedis:
    """redis-server on a free loopback port, nothing persisted; ``stop()`` shuts it down."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            sys.exit("bench_store: redis-server is not on PATH (scripts/ensure-system-deps.sh installs it)")
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self.workdir = tempfile.mkdtemp(prefix="mn-bench-redis-")
        args = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        with open(f"{self.workdir}/redis.log", "ab") as log:
            self.proc = subprocess.Popen([*args, "--dir", self.workdir], stdout=log, stderr=subprocess.STDOUT)
        self.client = redis.Redis(port=self.port, socket_timeout=10)
        deadline = time.monotonic() + 10
        while True:
            try:
                self.client.ping()
                break
            except redis.ConnectionError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def flush(self) -> None:
        self.client.flushall()

    def stop(self) -> None:
        try:
            self.client.shutdown(nosave=True)
        except redis.ConnectionError:
            pass  # the server closes the connection as it exits
        self.client.close()
        self.proc.wait(10)
        shutil.rmtree(self.workdir, ignore_errors=True)


@dataclass
class EventsRun:
    events_per_s: float
    events: int
    writes: int


async def events_run(n: int, store_url: str | None, batched: bool) -> EventsRun:
    """One router-chain job of ``n`` messages; events appended per second until its end is durable."""
    data = tempfile.mkdtemp(prefix="mn-bench-store-")
    try:
        settings = Settings.from_env(
            {},
            data_dir=data,
            temp_dir=data,
            node_name="mn@bench",
            execution_mode="inline",
            store_url=store_url,
            redis_namespace=f"bench_{uuid.uuid4().hex[:8]}",
        )
        async with Runtime(settings) as rt:
            if not batched:
                rt.persister = PerEventWrites(rt.store, settings.store_flush_interval_ms)
            persister = rt.persister
            assert persister is not None
            started = time.perf_counter()
            job_id = await rt.submit(chain(n))
            record = await rt.wait_for_job(job_id, 600)  # returns once the terminal state is in the store
            elapsed = time.perf_counter() - started
            assert record["status"] == "completed", record
            events = await rt.store.count_events(job_id)
            assert events >= n * 6, events
            writes = persister.writes if isinstance(persister, PerEventWrites) else persister.batches_written
        return EventsRun(events / elapsed, events, writes)
    finally:
        shutil.rmtree(data, ignore_errors=True)


def measure_events(report: Report, server: PrivateRedis, n: int, repeats: int) -> None:
    for backend, url in (("SQLite", None), ("Redis", server.url)):
        runs: dict[bool, list[EventsRun]] = {True: [], False: []}
        _loop.run(events_run(200, url, True))  # warm-up
        for _ in range(repeats):
            for batched in (True, False):  # interleaved: drift on a shared machine hits both alike
                runs[batched].append(_loop.run(events_run(n, url, batched)))
                server.flush()
        med = {}
        for batched, label in ((True, "batched (write-behind)"), (False, "unbatched (write_batch per event)")):
            samples = runs[batched]
            med[batched] = report.add(
                f"{backend} events/s, {label}, N={n}", [r.events_per_s for r in samples], "events/s"
            )
        for batched, label in ((True, "batched"), (False, "unbatched")):
            per_write = [r.events / max(r.writes, 1) for r in runs[batched]]
            report.add(f"{backend} events per store write, {label}", per_write, "events/write")
        report.ratio(f"{backend} events/s, batched / unbatched", med[True], med[False], target=">= 5.0")


def measure_chain(report: Report, server: PrivateRedis, n: int, repeats: int) -> None:
    _loop.run(one_run(500, True, server.url))  # warm-up
    server.flush()
    on_sqlite: list[float] = []
    on_redis: list[float] = []
    for _ in range(repeats):
        on_sqlite.append(_loop.run(one_run(n, True)))
        on_redis.append(_loop.run(one_run(n, True, server.url)))
        server.flush()
    m_sqlite = report.add(f"router chain on SQLite: msg/s end to end, N={n}", on_sqlite, "msg/s")
    m_redis = report.add(f"router chain on Redis: msg/s end to end, N={n}", on_redis, "msg/s")
    report.ratio("router chain throughput, Redis / SQLite", m_redis, m_sqlite, target=">= 0.5")


def main() -> None:
    args = parser(__doc__ or "").parse_args()
    events_n = 300 if args.quick else 2_000
    chain_n = 3_000 if args.quick else 20_000
    report = Report("store writes under a running job: Redis and SQLite")
    server = PrivateRedis()
    try:
        measure_events(report, server, events_n, args.repeats)
        measure_chain(report, server, chain_n, args.repeats)
    finally:
        server.stop()
    report.write(args.json)


if __name__ == "__main__":
    main()
