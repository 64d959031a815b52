"""Shared-memory mailbox: process-to-process throughput and parked-consumer wake-up latency.

Side by side in one run (repeats interleaved, medians reported):

- records/s of 100-byte records from one producer process to one consumer process, with the
  per-record API (``put`` / ``get``): Cython ``Mailbox`` vs pure ``PyMailbox`` vs
  ``multiprocessing.Queue`` (the baseline). Target: Cython >= 5x ``mp.Queue``. Also the batch
  API (``put_many`` / ``get_many`` of 64) for both implementations.
- wake-up latency of a parked consumer (it has spun, registered as a waiter and is asleep in
  ``poll``): time from ``put`` in the producer to the consumer holding the record, p50 / p99,
  Cython and pure, with ``mp.Queue`` (consumer blocked in ``get``) for reference.

Timestamps cross processes through ``time.monotonic_ns`` (CLOCK_MONOTONIC is system-wide).

Usage: ``python benchmarks/bench_mailbox.py [--json OUT] [--repeats N] [--quick] [--records N]``.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import statistics
import struct
import time
from typing import Any

from _harness import Report, parser

from mncore._fast import PyMailbox, _bell, cleanup_stale
from mncore._fast.segment import unlink_segment

try:
    from mncore._fast._ring import Mailbox as CyMailbox
except ImportError:  # pure build: the Cython rows are skipped
    CyMailbox = None

PAYLOAD = b"x" * 100
BATCH = 64
_TS = struct.Struct("=q")


def _impl(name: str) -> Any:
    return CyMailbox if name == "cython" else PyMailbox


# ---- throughput ------------------------------------------------------------------------------


def _producer(kind: str, target: Any, n: int, batched: bool, start: Any) -> None:
    box = _impl(kind).attach(target) if kind != "mp.Queue" else target
    start.wait()
    if kind == "mp.Queue":
        for _ in range(n):
            box.put(PAYLOAD)
    elif batched:
        chunk = [PAYLOAD] * BATCH
        for i in range(0, n, BATCH):
            box.put_many(chunk[: min(BATCH, n - i)])
    else:
        put = box.put
        for _ in range(n):
            put(PAYLOAD)


def _consumer(kind: str, target: Any, n: int, batched: bool, start: Any, done: Any) -> None:
    box = _impl(kind).attach(target) if kind != "mp.Queue" else target
    start.wait()
    got = 0
    if kind == "mp.Queue" or not batched:
        get = box.get
        while got < n:
            get()
            got += 1
    else:
        while got < n:
            got += len(box.get_many(BATCH))
    done.put(time.monotonic())


def throughput(ctx: Any, kind: str, n: int, batched: bool) -> float:
    """One run: records/s from the moment both sides are released to the last record taken."""
    name = f"mn_bench_mb_{os.getpid()}"
    if kind == "mp.Queue":
        target: Any = ctx.Queue()
    else:
        unlink_segment(name)
        box = _impl(kind).create(name, capacity=1 << 20)
        target = box.name
    start, done = ctx.Event(), ctx.Queue()
    procs = [
        ctx.Process(target=_consumer, args=(kind, target, n, batched, start, done)),
        ctx.Process(target=_producer, args=(kind, target, n, batched, start)),
    ]
    for proc in procs:
        proc.start()
    time.sleep(0.2)  # both sides attached and waiting
    started = time.monotonic()
    start.set()
    finished = done.get(timeout=600)
    for proc in procs:
        proc.join(60)
    if kind != "mp.Queue":
        box.close()
        box.unlink()
    return n / (finished - started)


# ---- wake-up latency ---------------------------------------------------------------------------


def _latency_consumer(kind: str, target: Any, samples: int, out: Any) -> None:
    _bell.RECHECK_INTERVAL = 60.0  # only the doorbell may wake us
    box = _impl(kind).attach(target) if kind != "mp.Queue" else target
    lat = []
    for _ in range(samples):
        data = box.get()
        lat.append(time.monotonic_ns() - _TS.unpack(data)[0])
    out.put(lat)


def latency(ctx: Any, kind: str, samples: int) -> list[float]:
    """Microseconds from put to the parked consumer holding the record."""
    name = f"mn_bench_lat_{os.getpid()}"
    box: Any = None
    if kind == "mp.Queue":
        target: Any = ctx.Queue()
    else:
        unlink_segment(name)
        box = _impl(kind).create(name, capacity=1 << 16)
        target = box.name
    out = ctx.Queue()
    proc = ctx.Process(target=_latency_consumer, args=(kind, target, samples, out))
    proc.start()
    time.sleep(0.3)
    sender = target if kind == "mp.Queue" else box
    for _ in range(samples):
        if box is not None:
            while box.stats()["consumers_waiting"] == 0:
                time.sleep(0.0005)
        time.sleep(0.003)  # well past the spin: the consumer is asleep in poll()
        sender.put(_TS.pack(time.monotonic_ns()))
    lat = out.get(timeout=120)
    proc.join(30)
    if box is not None:
        box.close()
        box.unlink()
    return [ns / 1000.0 for ns in lat]


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--records", type=int, default=300_000, help="records per throughput run")
    p.add_argument("--latency-samples", type=int, default=300)
    p.add_argument("--start-method", default="fork", choices=["fork", "spawn", "forkserver"])
    args = p.parse_args()
    n = 30_000 if args.quick else args.records
    samples = 50 if args.quick else args.latency_samples
    ctx = mp.get_context(args.start_method)
    cleanup_stale("bench_")
    kinds = ["mp.Queue", "python"] + (["cython"] if CyMailbox is not None else [])

    report = Report("mailbox: 100-byte records, one producer process -> one consumer process")
    runs: dict[str, list[float]] = {f"{k} put/get": [] for k in kinds}
    runs.update({f"{k} put_many/get_many({BATCH})": [] for k in kinds if k != "mp.Queue"})
    for _ in range(args.repeats):  # interleaved so machine noise hits every subject alike
        for kind in kinds:
            runs[f"{kind} put/get"].append(throughput(ctx, kind, n, batched=False))
            if kind != "mp.Queue":
                runs[f"{kind} put_many/get_many({BATCH})"].append(throughput(ctx, kind, n, batched=True))
    medians = {key: report.add(f"throughput {key}", samples_, "records/s") for key, samples_ in runs.items()}
    base = medians["mp.Queue put/get"]
    if CyMailbox is not None:
        report.ratio("cython put/get vs mp.Queue", medians["cython put/get"], base, target=">= 5")
        report.ratio("cython put/get vs pure put/get", medians["cython put/get"], medians["python put/get"])
        report.ratio("cython batched vs mp.Queue", medians[f"cython put_many/get_many({BATCH})"], base)
    report.ratio("pure put/get vs mp.Queue", medians["python put/get"], base)

    for kind in kinds:
        lat = latency(ctx, kind, samples)
        report.add(f"wake-up latency {kind} p50", [_pct(lat, 0.5)], "us", count=len(lat))
        report.add(f"wake-up latency {kind} p99", [_pct(lat, 0.99)], "us", mean=statistics.fmean(lat))
    report.write(args.json)


if __name__ == "__main__":
    main()
