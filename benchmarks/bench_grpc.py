"""gRPC vs REST on the same ``mn server``: SubmitJob / GetJob beside POST /jobs / GET /jobs/{id}.

One real ``mn server`` (REST on Hypercorn and grpc.aio on one uvloop, embedded SQLite store,
inline executors) serves both APIs in the same run. Client processes keep ``--concurrency`` calls
in flight each for a fixed time and record every call's latency:

- gRPC: ``grpc.aio`` stubs on one HTTP/2 channel per process (what the SDK uses);
- REST: a minimal HTTP/1.1 keep-alive client on asyncio, one connection per in-flight call (so
  the client costs little and the server is what is measured).

Reported per operation: calls/s, p50 and p99 latency, and the gRPC/REST throughput ratio. Every
submission is a real job (a router feeding an aggregator) that runs to completion in the server.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _harness import Report, parser

from mncore import _loop

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = {
    "manifest_version": "1.0",
    "graph_id": "bench_grpc",
    "entrypoints": ["r"],
    "initial_inputs": {"r": [{"n": 1}]},
    "nodes": [
        {"node_id": "r", "agent_type": "router"},
        {"node_id": "out", "agent_type": "aggregator", "config": {"complete_after": 1}},
    ],
    "edges": [{"from_node": "r", "to_node": "out", "message_type": "*"}],
}
BODY = json.dumps(MANIFEST).encode()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """``mn server`` on free ports with its data in a temporary folder."""

    def __init__(self) -> None:
        self.data = tempfile.mkdtemp(prefix="mn-bench-grpc-")
        self.rest_port, self.grpc_port = _free_port(), _free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MN_", "MIRROR_NEURON_"))}
        env.update(MN_DATA_DIR=self.data, MN_TEMP_DIR=self.data, MN_EXECUTION_MODE="inline", MN_LOG_LEVEL="WARNING")
        env["PYTHONPATH"] = str(ROOT)
        cmd = [sys.executable, "-m", "mncore.cli", "server", "--port", str(self.rest_port)]
        cmd += ["--grpc-port", str(self.grpc_port)]
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.target = f"127.0.0.1:{self.grpc_port}"
        from mncore.sdk import Client

        with Client(self.target, timeout=1, auth_token="", admin_token="") as client:
            for _ in range(200):
                try:
                    if client.health() == "SERVING":
                        return
                except Exception:
                    time.sleep(0.05)
        raise RuntimeError("mn server did not start")

    def close(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(30)
        shutil.rmtree(self.data, ignore_errors=True)


# -- clients (one process each) -----------------------------------------------------------------


async def _grpc_worker(kind: str, target: str, job_id: str, deadline: float, concurrency: int) -> list[float]:
    from grpc import aio

    from mncore._proto import job_pb2, job_pb2_grpc

    latencies: list[float] = []
    async with aio.insecure_channel(target) as channel:
        stub = job_pb2_grpc.JobServiceStub(channel)
        submit = job_pb2.SubmitJobRequest(manifest_json=BODY.decode(), version=1)
        get = job_pb2.GetJobRequest(job_id=job_id, version=1)

        async def one() -> None:
            while (t0 := time.perf_counter()) < deadline:
                await (stub.SubmitJob(submit) if kind == "submit" else stub.GetJob(get))
                latencies.append(time.perf_counter() - t0)

        await asyncio.gather(*(one() for _ in range(concurrency)))
    return latencies


async def _rest_worker(kind: str, port: int, job_id: str, deadline: float, concurrency: int) -> list[float]:
    if kind == "submit":
        request = b"POST /api/v1/jobs HTTP/1.1\r\nHost: b\r\nContent-Type: application/json\r\n"
        request += b"Content-Length: %d\r\n\r\n%s" % (len(BODY), BODY)
        expected = b"HTTP/1.1 201"
    else:
        request = f"GET /api/v1/jobs/{job_id} HTTP/1.1\r\nHost: b\r\n\r\n".encode()
        expected = b"HTTP/1.1 200"
    latencies: list[float] = []

    async def one() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while (t0 := time.perf_counter()) < deadline:
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                if not head.startswith(expected):
                    raise RuntimeError(head[:80].decode())
                length = re.search(rb"(?i)content-length: *(\d+)", head)
                await reader.readexactly(int(length.group(1)) if length else 0)
                latencies.append(time.perf_counter() - t0)
        finally:
            writer.close()

    await asyncio.gather(*(one() for _ in range(concurrency)))
    return latencies


def _client(api: str, kind: str, address: Any, job_id: str, start: float, seconds: float, conc: int, out: Any) -> None:
    time.sleep(max(0.0, start - time.time()))
    deadline = time.perf_counter() + seconds
    worker = _grpc_worker if api == "grpc" else _rest_worker
    out.put(_loop.run(worker(kind, address, job_id, deadline, conc)))


def measure(api: str, kind: str, server: Server, job_id: str, seconds: float, procs: int, conc: int) -> Any:
    """``(calls/s, p50 ms, p99 ms)`` of one load run."""
    address: Any = server.target if api == "grpc" else server.rest_port
    queue: Any = multiprocessing.Queue()
    start = time.time() + 0.3  # every client begins together, after its imports
    args = (api, kind, address, job_id, start, seconds, conc, queue)
    workers = [multiprocessing.Process(target=_client, args=args) for _ in range(procs)]
    for worker in workers:
        worker.start()
    latencies = sorted(lat for _ in workers for lat in queue.get())
    for worker in workers:
        worker.join()
    if not latencies:
        raise RuntimeError(f"{api} {kind}: no call finished")
    p50 = latencies[len(latencies) // 2] * 1000
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
    return len(latencies) / seconds, p50, p99


LABELS = {
    ("grpc", "get"): "gRPC GetJob",
    ("rest", "get"): "REST GET /jobs/{id}",
    ("grpc", "submit"): "gRPC SubmitJob",
    ("rest", "submit"): "REST POST /jobs",
}


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--procs", type=int, default=max(1, (os.cpu_count() or 2) // 2), help="client processes")
    p.add_argument("--concurrency", type=int, default=8, help="calls in flight per client process")
    p.add_argument("--submit-concurrency", type=int, default=4, help="submissions in flight per client process")
    args = p.parse_args()
    seconds = 1.0 if args.quick else 3.0
    report = Report(f"gRPC vs REST on one mn server ({args.procs} client process(es))")
    server = Server()
    try:
        from mncore.sdk import Client

        with Client(server.target, auth_token="", admin_token="") as client:
            job_id = client.submit_job(MANIFEST)
        rates: dict[tuple[str, str], float] = {}
        for kind, conc in (("get", args.concurrency), ("submit", args.submit_concurrency)):
            for api in ("grpc", "rest"):
                measure(api, kind, server, job_id, 0.5, args.procs, conc)  # warm-up
                runs = [measure(api, kind, server, job_id, seconds, args.procs, conc) for _ in range(args.repeats)]
                label = f"{LABELS[api, kind]} (c={conc * args.procs})"
                rates[api, kind] = report.add(f"{label} calls/s", [r[0] for r in runs], "calls/s")
                report.add(f"{label} p50", [r[1] for r in runs], "ms")
                report.add(f"{label} p99", [r[2] for r in runs], "ms")
        report.ratio("GetJob throughput, gRPC / REST", rates["grpc", "get"], rates["rest", "get"])
        report.ratio("SubmitJob throughput, gRPC / REST", rates["grpc", "submit"], rates["rest", "submit"])
    finally:
        server.close()
    report.write(args.json)


if __name__ == "__main__":
    main()
