"""REST throughput: the same Starlette app on Hypercorn (what ``mn server`` runs) vs uvicorn.

Side by side in one run, each server in its own process on uvloop with a real Runtime on the
embedded SQLite store:

- ``GET /api/v1/health`` and ``GET /api/v1/jobs/{id}`` requests/s, driven by client processes
  holding keep-alive connections (a minimal HTTP/1.1 client on uvloop, so the client is not the
  bottleneck; ``wrk`` is used instead when it is installed);
- ``POST /api/v1/jobs`` submissions/s with p50/p99 latency (httpx, a few concurrent clients; every
  submission is a real job that runs to completion in the server).

uvicorn is the framework ceiling: the ratios say what Hypercorn costs over it. Without
``httptools`` both servers parse HTTP with h11.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

import httpx
from _harness import Report, parser

from mncore import _loop
from mncore.config import Settings
from mncore.runtime import Runtime

API = "/api/v1"
SERVERS = ("hypercorn", "uvicorn")


def quick_job() -> dict[str, Any]:
    return {
        "manifest_version": "1.0",
        "graph_id": "bench_rest",
        "entrypoints": ["r"],
        "initial_inputs": {"r": [{"n": 1}]},
        "nodes": [
            {"node_id": "r", "agent_type": "router"},
            {"node_id": "out", "agent_type": "aggregator", "config": {"complete_after": 1}},
        ],
        "edges": [{"from_node": "r", "to_node": "out", "message_type": "*"}],
    }


# -- the server side (a child process) ---------------------------------------------------------------


async def _serve(kind: str, data_dir: str) -> None:
    from server.rest import create_app
    from server.rest.server import RestServer, bind_socket

    settings = Settings.from_env(
        {}, data_dir=data_dir, temp_dir=data_dir, node_name="mn@bench", execution_mode="inline", api_port=0
    )
    async with Runtime(settings) as runtime:
        stop = asyncio.Event()
        if kind == "hypercorn":
            rest = RestServer(runtime, settings)
            url = rest.bind()
            task = asyncio.ensure_future(rest.serve(stop))
        else:
            import uvicorn

            sock = bind_socket("127.0.0.1", 0)
            url = f"http://127.0.0.1:{sock.getsockname()[1]}"
            config = uvicorn.Config(create_app(runtime, settings), loop="none", lifespan="off", log_level="warning")
            server = uvicorn.Server(config)
            task = asyncio.ensure_future(server.serve(sockets=[sock]))
        print(url, flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the parent closes stdin
        if kind == "hypercorn":
            stop.set()
        else:
            server.should_exit = True
        await task


class Served:
    """A server child process; the URL comes on its first stdout line."""

    def __init__(self, kind: str) -> None:
        self.data = tempfile.mkdtemp(prefix=f"mn-bench-{kind}-")
        args = [sys.executable, __file__, "--serve", kind, "--data", self.data]
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()
        if not self.url.startswith("http"):
            raise RuntimeError(f"{kind} did not start")

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(30)
        shutil.rmtree(self.data, ignore_errors=True)


# -- load generation ------------------------------------------------------------------------------


async def _connection(host: str, port: int, request: bytes, deadline: float) -> int:
    reader, writer = await asyncio.open_connection(host, port)
    done = 0
    try:
        while time.perf_counter() < deadline:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(head[:80].decode())
            length = re.search(rb"(?i)content-length: *(\d+)", head)
            await reader.readexactly(int(length.group(1)) if length else 0)
            done += 1
    finally:
        writer.close()
    return done


def _client_process(url: str, path: str, connections: int, seconds: float, out: Any) -> None:
    host, port = url.split("//", 1)[1].split(":")
    request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()

    async def run() -> int:
        deadline = time.perf_counter() + seconds
        counts = await asyncio.gather(*(_connection(host, int(port), request, deadline) for _ in range(connections)))
        return sum(counts)

    out.put(_loop.run(run()))


def requests_per_second(url: str, path: str, seconds: float, procs: int, connections: int) -> float:
    wrk = shutil.which("wrk")
    if wrk:
        result = subprocess.run(
            [wrk, f"-t{procs}", f"-c{procs * connections}", f"-d{max(1, int(seconds))}s", url + path],
            capture_output=True,
            text=True,
            check=True,
        )
        return float(re.search(r"Requests/sec:\s*([\d.]+)", result.stdout).group(1))  # type: ignore[union-attr]
    queue: Any = multiprocessing.Queue()
    workers = [
        multiprocessing.Process(target=_client_process, args=(url, path, connections, seconds, queue))
        for _ in range(procs)
    ]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    total = sum(queue.get() for _ in workers)
    for worker in workers:
        worker.join()
    return total / max(time.perf_counter() - started - 0.05, seconds)


async def _submissions(url: str, total: int, concurrency: int) -> tuple[float, list[float]]:
    latencies: list[float] = []
    body = quick_job()
    async with httpx.AsyncClient(base_url=url + API, timeout=30) as client:
        remaining = iter(range(total))

        async def worker() -> None:
            for _ in remaining:
                t0 = time.perf_counter()
                response = await client.post("/jobs", json=body)
                latencies.append(time.perf_counter() - t0)
                assert response.status_code == 201, response.text

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return total / (time.perf_counter() - started), latencies


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# -- the run ------------------------------------------------------------------------------------


def measure(kind: str, args: Any, report: Report, results: dict[str, dict[str, float]]) -> None:
    served = Served(kind)
    try:
        job_id = httpx.post(served.url + API + "/jobs", json=quick_job()).json()["id"]
        seconds = 1.0 if args.quick else 3.0
        procs = max(1, (os.cpu_count() or 2) // 2)
        for name, path in (("health", f"{API}/health"), ("job", f"{API}/jobs/{job_id}")):
            requests_per_second(served.url, path, 0.5, procs, args.connections)  # warm-up
            samples = [
                requests_per_second(served.url, path, seconds, procs, args.connections) for _ in range(args.repeats)
            ]
            results[kind][name] = report.add(f"{kind}: GET {path.replace(job_id, '{id}')} req/s", samples, "req/s")
        total = 100 if args.quick else 400
        rates, p50s, p99s = [], [], []
        for _ in range(args.repeats):
            rate, latencies = _loop.run(_submissions(served.url, total, args.submit_concurrency))
            rates.append(rate)
            p50s.append(statistics.median(latencies) * 1000)
            p99s.append(_percentile(latencies, 0.99) * 1000)
        results[kind]["submit"] = report.add(
            f"{kind}: POST /jobs submissions/s (c={args.submit_concurrency})", rates, "jobs/s"
        )
        report.add(f"{kind}: POST /jobs p50 latency", p50s, "ms")
        report.add(f"{kind}: POST /jobs p99 latency", p99s, "ms")
    finally:
        served.close()


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--serve", choices=SERVERS, help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    p.add_argument("--connections", type=int, default=16, help="keep-alive connections per client process")
    p.add_argument("--submit-concurrency", type=int, default=4, help="concurrent POST /jobs clients")
    args = p.parse_args()
    if args.serve:
        _loop.run(_serve(args.serve, args.data))
        return
    report = Report("REST API: Hypercorn (mn server) vs uvicorn (framework ceiling), same Starlette app")
    results: dict[str, dict[str, float]] = {kind: {} for kind in SERVERS}
    for kind in SERVERS:
        measure(kind, args, report, results)
    for name, label in (("health", "GET /health"), ("job", "GET /jobs/{id}"), ("submit", "POST /jobs")):
        report.ratio(f"{label} throughput, Hypercorn / uvicorn", results["hypercorn"][name], results["uvicorn"][name])
    report.write(args.json)


if __name__ == "__main__":
    main()
