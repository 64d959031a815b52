"""Runner overhead: the host runner vs a bare asyncio subprocess, and the python runner's call rate.

Side by side in one process (repeats interleaved, medians reported):

- ``/bin/true`` with 8 concurrent: ``asyncio.create_subprocess_exec`` + ``wait()`` (baseline) vs the
  ``host`` runner (workspace staging, environment, capture, reaping, result map). Target: the
  runner reaches >= 85% of the baseline's runs/s.
- the ``python`` runner with a no-op callable, sequential calls in one process, and the cost of
  the workspace staging alone (mkdir + 5 files + removal), which dominates it.

Usage: ``python benchmarks/bench_runners.py [--json OUT] [--repeats N] [--quick] [--temp-dir DIR]``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from _harness import Report, parser

from mncore.config import Settings
from mncore.execution import RunRequest, get_runner
from mncore.execution.workspace import stage
from mncore.message import normalize

CONCURRENCY = 8


def _noop(request: dict[str, object]) -> None:
    return None


async def _bounded(n: int, make: object) -> float:
    """Run ``n`` coroutines from ``make()`` with at most CONCURRENCY in flight; return runs/s."""
    queue = iter(range(n))

    async def worker() -> None:
        for _ in queue:
            await make()  # type: ignore[operator]

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return n / (time.perf_counter() - started)


async def _raw_true() -> None:
    proc = await asyncio.create_subprocess_exec("/bin/true")
    await proc.wait()


def _request(config: dict[str, object], payloads: str | None = None) -> RunRequest:
    message = normalize({"type": "task", "body": {"n": 1}}).to_dict()
    return RunRequest(job_id="bench", agent_id="a", config=config, message=message, payloads_path=payloads)


async def bench_host(settings: Settings, runs: int, repeats: int, report: Report) -> None:
    runner = get_runner("host", settings)
    request = _request({"command": ["/bin/true"]})

    def emit(event_type: str, payload: dict[str, object]) -> None:
        return None

    async def host_true() -> None:
        outcome = await runner.run(request, emit)
        assert outcome.ok, outcome.result

    await _bounded(50, _raw_true)  # warm up both paths
    await _bounded(50, host_true)
    raw: list[float] = []
    host: list[float] = []
    for _ in range(repeats):
        raw.append(await _bounded(runs, _raw_true))
        host.append(await _bounded(runs, host_true))
    base = report.add(f"raw create_subprocess_exec /bin/true ({CONCURRENCY} concurrent)", raw, "runs/s")
    mine = report.add(f"host runner /bin/true ({CONCURRENCY} concurrent)", host, "runs/s")
    report.ratio("host runner / raw subprocess", mine, base, target=">= 0.85")


async def bench_python(settings: Settings, calls: int, repeats: int, report: Report) -> None:
    runner = get_runner("python", settings)
    module = Path(__file__).resolve().stem
    request = _request({"python_callable": f"{module}:_noop"}, payloads=str(Path(__file__).resolve().parent))

    def emit(event_type: str, payload: dict[str, object]) -> None:
        return None

    async def sequential(n: int) -> float:
        started = time.perf_counter()
        for _ in range(n):
            await runner.run(request, emit)
        return n / (time.perf_counter() - started)

    def staging_only(n: int) -> float:
        started = time.perf_counter()
        for _ in range(n):
            stage(request, "python", "bench", settings.temp_dir).remove()
        return (time.perf_counter() - started) / n * 1e6

    await sequential(200)
    report.add("python runner no-op calls (sequential, 1 process)", [await sequential(calls) for _ in range(repeats)],
               "calls/s")  # fmt: skip
    report.add("  of which: workspace stage + remove per call", [staging_only(calls) for _ in range(repeats)], "us")


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.split("\n")[0] if __doc__ else "runners")
    p.add_argument("--temp-dir", help="MN_TEMP_DIR for the workspaces (default: a fresh dir under /tmp)")
    p.add_argument("--uvloop", action="store_true", help="run on uvloop instead of the default asyncio loop")
    args = p.parse_args(argv)
    runs = 300 if args.quick else 2000
    calls = 1000 if args.quick else 5000
    temp = args.temp_dir or tempfile.mkdtemp(prefix="mn-bench-runners-")
    settings = Settings(temp_dir=temp, data_dir=f"{temp}/data", home=f"{temp}/home", node_name="bench")
    report = Report("runners")

    async def run_all() -> None:
        await bench_host(settings, runs, args.repeats, report)
        await bench_python(settings, calls, args.repeats, report)

    try:
        if args.uvloop:
            import uvloop

            uvloop.run(run_all())
        else:
            asyncio.run(run_all())
    finally:
        if not args.temp_dir:
            shutil.rmtree(temp, ignore_errors=True)
    print(f"temp_dir={temp} loop={'uvloop' if args.uvloop else 'asyncio'} cpus={os.cpu_count()}")
    report.write(args.json)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    raise SystemExit(main())
