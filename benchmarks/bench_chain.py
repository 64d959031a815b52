"""Messages per second through a 5-router chain on the embedded store, persistence on vs off.

Side by side in one run: the same job (N seeded messages through routers r0..r4 into a sensor
that completes after N) on a Runtime with the SQLite store and write-behind persistence, and on a
Runtime with persistence disabled. Reports end-to-end messages/s, agent handlings/s (each message
is handled 6 times: 5 routers + the sink) and the per-message cost ratio on/off (target <= 2x).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from typing import Any

from _harness import Report, parser, repeat

from mncore import _loop
from mncore.config import Settings
from mncore.runtime import Runtime
from mncore.store import open_store


def chain(n: int) -> dict[str, Any]:
    nodes = [{"node_id": f"r{i}", "agent_type": "router"} for i in range(5)]
    nodes.append({"node_id": "sink", "agent_type": "sensor", "config": {"complete_after": n, "complete_job": True}})
    edges = [{"from_node": f"r{i}", "to_node": f"r{i + 1}", "message_type": "*"} for i in range(4)]
    edges.append({"from_node": "r4", "to_node": "sink", "message_type": "*"})
    return {
        "manifest_version": "1.0",
        "graph_id": "bench_chain",
        "entrypoints": ["r0"],
        "nodes": nodes,
        "edges": edges,
        "initial_inputs": {"r0": [{"i": i} for i in range(n)]},
    }


async def one_run(n: int, persist: bool, store_url: str | None = None) -> float:
    data = tempfile.mkdtemp(prefix="mn-bench-")
    try:
        settings = Settings.from_env(
            {}, data_dir=data, temp_dir=data, node_name="mn@bench", execution_mode="inline", store_url=store_url
        )
        store = open_store(settings) if persist else open_store(settings.replace(store_url="memory://"))
        manifest = chain(n)
        async with Runtime(settings, store=store, persist=persist) as rt:
            started = time.perf_counter()
            job_id = await rt.submit(manifest)
            record = await rt.wait_for_job(job_id, 600)
            elapsed = time.perf_counter() - started
            assert record["status"] == "completed", record
            if persist:
                events = await rt.store.count_events(job_id)
                assert events >= n * 6, events
        return n / elapsed
    finally:
        shutil.rmtree(data, ignore_errors=True)


def main() -> None:
    args = parser(__doc__ or "").parse_args()
    n = 5_000 if args.quick else 50_000
    report = Report("router chain (5 routers + sink), embedded store")
    _loop.run(one_run(500, True))  # warm-up
    on = repeat(lambda: _loop.run(one_run(n, True)), args.repeats)
    off = repeat(lambda: _loop.run(one_run(n, False)), args.repeats)
    m_on = report.add(f"persistence on (SQLite): messages/s end to end, N={n}", on, "msg/s")
    m_off = report.add(f"persistence off: messages/s end to end, N={n}", off, "msg/s")
    report.add("persistence on: agent handlings/s (6 per message)", [x * 6 for x in on], "handlings/s")
    report.add("persistence off: agent handlings/s (6 per message)", [x * 6 for x in off], "handlings/s")
    report.ratio("per-message cost, persistence on / off", m_off, m_on, target="<= 2.0")
    report.write(args.json)


if __name__ == "__main__":
    main()
