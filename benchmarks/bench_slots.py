"""Shared-memory slot table: acquire + release pairs per second, Cython vs pure.

Side by side in one run (repeats interleaved, medians reported):

- uncontended, one process: ``try_acquire`` + ``release`` and ``acquire`` (the blocking API,
  granted at once) + ``release`` on a pool with free capacity; baseline: a
  ``multiprocessing.Semaphore`` acquire + release (the stdlib's process-shared counter).
- two processes hammering one capacity-1 pool, each looping ``acquire`` (blocking) +
  ``release`` (total pairs/s; most grants are immediate, some queue and are handed over).
- hand-over latency: a waiter parked in ``acquire`` in another process, the holder releases;
  time from ``release`` to the waiter returning, p50 / p99 (the FIFO grant plus the doorbell).
- ``stats()`` calls per second (the read any process does without a round trip).

Usage: ``python benchmarks/bench_slots.py [--json OUT] [--repeats N] [--quick] [--pairs N]``.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from collections.abc import Callable
from typing import Any

from _harness import Report, parser

from mncore._fast import PySlotTable, cleanup_stale
from mncore._fast.segment import unlink_segment

try:
    from mncore._fast._slots import SlotTable as CySlotTable
except ImportError:  # pure build: the Cython rows are skipped
    CySlotTable = None

IDS = [f"lease-{i:05d}" for i in range(1024)]
LABELS = ("try_acquire+release", "acquire+release", "2 procs on a capacity-1 pool: pairs", "stats()")


def _impl(name: str) -> Any:
    return CySlotTable if name == "cython" else PySlotTable


def _fresh(kind: str, capacity: int) -> Any:
    name = f"mn_bench_slots_{os.getpid()}"
    unlink_segment(name)
    return _impl(kind).create(name, {"default": capacity})


def _rate(n: int, body: Callable[[int], None]) -> float:
    started = time.perf_counter()
    body(n)
    return n / (time.perf_counter() - started)


def uncontended(kind: str, n: int, blocking: bool) -> float:
    table = _fresh(kind, 64)
    pid = os.getpid()
    take = table.acquire if blocking else table.try_acquire
    release = table.release

    def body(count: int) -> None:
        for i in range(count):
            lease = IDS[i & 1023]
            take("default", 1, pid, lease)
            release(lease)

    try:
        return _rate(n, body)
    finally:
        table.close()
        table.unlink()


def semaphore(n: int) -> float:
    sem = mp.get_context("fork").Semaphore(64)

    def body(count: int) -> None:
        for _ in range(count):
            sem.acquire()
            sem.release()

    return _rate(n, body)


def stats_rate(kind: str, n: int) -> float:
    table = _fresh(kind, 4)
    try:
        return _rate(n, lambda count: [table.stats() for _ in range(count)] and None)
    finally:
        table.close()
        table.unlink()


def _contender(kind: str, name: str, tag: str, n: int, start: Any, done: Any) -> None:
    table = _impl(kind).attach(name)
    pid = os.getpid()
    start.wait()
    for i in range(n):
        lease = f"{tag}{i & 1023}"
        table.acquire("default", 1, pid, lease)
        table.release(lease)
    done.put(time.monotonic())


def contended(kind: str, n: int) -> float:
    """Two processes alternate on one slot: total acquire+release pairs per second."""
    ctx = mp.get_context("fork")
    table = _fresh(kind, 1)
    start, done = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_contender, args=(kind, table.name, tag, n, start, done)) for tag in "ab"]
    for proc in procs:
        proc.start()
    time.sleep(0.2)
    started = time.monotonic()
    start.set()
    finished = max(done.get(timeout=600) for _ in procs)
    for proc in procs:
        proc.join(60)
    table.close()
    table.unlink()
    return 2 * n / (finished - started)


def _waiter(kind: str, name: str, samples: int, go: Any, out: Any) -> None:
    from mncore._fast import _bell

    _bell.RECHECK_INTERVAL = 60.0  # only the doorbell may wake us
    table = _impl(kind).attach(name)
    pid = os.getpid()
    for i in range(samples):
        go.get()  # the parent holds the slot: our acquire queues and parks
        table.acquire("default", 1, pid, f"w{i}")
        out.put(time.monotonic_ns())
        table.release(f"w{i}")


def handover(kind: str, samples: int) -> list[float]:
    """Microseconds from release() to a parked waiter in another process holding the slot."""
    ctx = mp.get_context("fork")
    table = _fresh(kind, 1)
    pid = os.getpid()
    go, out = ctx.Queue(), ctx.Queue()
    proc = ctx.Process(target=_waiter, args=(kind, table.name, samples, go, out))
    proc.start()
    lat = []
    for _ in range(samples):
        table.acquire("default", 1, pid, "holder")
        go.put(True)
        while table.stats()["default"]["queued"] == 0:
            time.sleep(0.0005)
        time.sleep(0.003)  # well past the waiter's checks: it is asleep
        released = time.monotonic_ns()
        table.release("holder")
        lat.append((out.get(timeout=60) - released) / 1000.0)
    proc.join(30)
    table.close()
    table.unlink()
    return lat


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--pairs", type=int, default=100_000, help="acquire+release pairs per uncontended run")
    p.add_argument("--handover-samples", type=int, default=200)
    args = p.parse_args()
    n = 10_000 if args.quick else args.pairs
    n_contended = max(1000, n // 10)
    cleanup_stale("bench_")
    kinds = ["python"] + (["cython"] if CySlotTable is not None else [])

    report = Report("slot table: acquire + release pairs")
    runs: dict[str, list[float]] = {"mp.Semaphore acquire+release": []}
    for kind in kinds:
        for label in LABELS:
            runs[f"{kind} {label}"] = []
    for _ in range(args.repeats):
        runs["mp.Semaphore acquire+release"].append(semaphore(n))
        for kind in kinds:
            runs[f"{kind} try_acquire+release"].append(uncontended(kind, n, blocking=False))
            runs[f"{kind} acquire+release"].append(uncontended(kind, n, blocking=True))
            runs[f"{kind} {LABELS[2]}"].append(contended(kind, n_contended))
            runs[f"{kind} stats()"].append(stats_rate(kind, n))
    med = {key: report.add(key, samples, "per s") for key, samples in runs.items()}
    if CySlotTable is not None:
        for label in LABELS:
            report.ratio(f"cython vs pure: {label}", med[f"cython {label}"], med[f"python {label}"])
        report.ratio(
            "cython try_acquire+release vs mp.Semaphore",
            med["cython try_acquire+release"],
            med["mp.Semaphore acquire+release"],
        )
    for kind in kinds:
        lat = handover(kind, 30 if args.quick else args.handover_samples)
        report.add(f"hand-over latency {kind} p50", [_pct(lat, 0.5)], "us", count=len(lat))
        report.add(f"hand-over latency {kind} p99", [_pct(lat, 0.99)], "us")
    report.write(args.json)


if __name__ == "__main__":
    main()
