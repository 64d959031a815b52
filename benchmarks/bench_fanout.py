"""End-to-end fan-out of no-op ``python``-runner executor runs through two pool worker processes.

One job: a router fans N seed messages out to E executors (``runner: python``, a no-op
callable, ``output_message_type: null``); every run goes supervisor -> shared-memory request
mailbox -> a pool worker -> completion mailbox -> supervisor, with the full per-message event
sequence persisted to the embedded store. Measured side by side in the same run: the same number
of direct calls of the runner in this process (the floor: staging + call + output handling, no
runtime around it). Reports runs/s and the runtime overhead per run (wall time per run minus the
floor per call; target: >= 10,000 runs/s, <= 100 µs overhead).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from _harness import Report, parser, repeat

from mncore import _loop
from mncore.config import Settings
from mncore.execution.request import RunRequest
from mncore.execution.runners import get_runner
from mncore.runtime import Runtime

NOOP = "def noop(request):\n    return None\n"


def bundle(root: Path, executors: int, per_executor: int) -> str:
    (root / "payloads").mkdir(parents=True)
    (root / "payloads" / "noop.py").write_text(NOOP)
    nodes: list[dict[str, Any]] = [{"node_id": "split", "agent_type": "router", "role": "root"}]
    edges = []
    for i in range(executors):
        nodes.append(
            {
                "node_id": f"x{i}",
                "agent_type": "executor",
                "config": {"runner": "python", "python_callable": "noop:noop", "output_message_type": None},
            }
        )
        edges.append({"from_node": "split", "to_node": f"x{i}", "message_type": "*"})
    manifest = {
        "manifest_version": "1.0",
        "graph_id": "fanout_bench",
        "nodes": nodes,
        "edges": edges,
        "initial_inputs": {"split": [{"i": i} for i in range(per_executor)]},
    }
    (root / "manifest.json").write_text(json.dumps(manifest))
    return str(root)


async def e2e(runs: int, executors: int, workers: int) -> float:
    tmp = Path(tempfile.mkdtemp(prefix="mn-fanout-"))
    try:
        settings = Settings.from_env(
            {},
            data_dir=str(tmp / "data"),
            temp_dir=str(tmp / "work"),
            node_name="mn@bench",
            execution_mode="process",
            pool_workers=workers,
            executor_max_concurrency=executors,
        )
        path = bundle(tmp / "bundle", executors, runs // executors)
        async with Runtime(settings) as rt:
            await rt.execution.backend._ensure_started()  # type: ignore[attr-defined]  # worker start-up not timed
            started = time.perf_counter()
            job_id = await rt.submit(path)
            await _until_runs(rt, job_id, executors * (runs // executors))
            elapsed = time.perf_counter() - started
            await rt.cancel(job_id)
        return executors * (runs // executors) / elapsed
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


async def _until_runs(rt: Runtime, job_id: str, expected: int) -> None:
    coordinator = rt.coordinators[job_id]
    while True:
        done = sum(w.state.get("runs", 0) for w in coordinator.workers.values() if w.agent_type == "executor")
        if done >= expected:
            return
        await asyncio.sleep(0.01)


async def floor(calls: int) -> float:
    tmp = Path(tempfile.mkdtemp(prefix="mn-floor-"))
    try:
        settings = Settings.from_env({}, data_dir=str(tmp / "data"), temp_dir=str(tmp / "work"))
        (tmp / "payloads").mkdir()
        (tmp / "payloads" / "noop.py").write_text(NOOP)
        runner = get_runner("python", settings)
        request = RunRequest(
            job_id="j",
            agent_id="x",
            runner="python",
            payloads_path=str(tmp / "payloads"),
            config={"runner": "python", "python_callable": "noop:noop"},
            message={"envelope": {"type": "t"}, "body": {"i": 1}},
        )
        started = time.perf_counter()
        for _ in range(calls):
            outcome = await runner.run(request, lambda t, p: None)
        assert outcome.ok, outcome.result
        return calls / (time.perf_counter() - started)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    args = parser(__doc__ or "").parse_args()
    runs = 2_000 if args.quick else 10_000
    report = Report(f"fan-out of {runs} no-op python-runner runs, 2 pool workers, embedded store")
    e2e_rates = repeat(lambda: _loop.run(e2e(runs, 64, 2)), args.repeats)
    floor_rates = repeat(lambda: _loop.run(floor(runs)), args.repeats)
    rate = report.add("end to end through 2 worker processes: runs/s", e2e_rates, "runs/s")
    direct = report.add("floor: direct runner calls in one process: calls/s", floor_rates, "calls/s")
    report.add("wall time per run, end to end", [1e6 / r for r in e2e_rates], "µs")
    report.add(
        "runtime overhead per run (wall per run - floor per call)", [1e6 / r - 1e6 / direct for r in e2e_rates], "µs"
    )
    report.ratio("end-to-end runs/s / floor calls/s", rate, direct)
    report.write(args.json)


if __name__ == "__main__":
    main()
