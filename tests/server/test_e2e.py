"""End to end: a real ``mn server`` process on a real port, driven with httpx.

Covers every endpoint and error status over the wire, auth and size limits, SIGTERM drain with
lease release and takeover after restart, a second SIGTERM, SIGHUP, sd_notify on a socket the
test binds, and the start-up failures with their exit codes.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from mn_server_testlib import ServerProcess, bundle_zip, command_job, quick_job, waiting_job

from mncore.store import SQLiteStore

pytestmark = pytest.mark.slow
Factory = Callable[..., ServerProcess]


def until(predicate: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def status_of(http: httpx.Client, job_id: str) -> str:
    return str(http.get(f"/jobs/{job_id}").json()["job"]["status"])


def test_every_endpoint_over_a_real_port(server_factory: Factory, tmp_path: Path) -> None:
    registry = tmp_path / "registry" / "reg"
    (registry / "payloads").mkdir(parents=True)
    (registry / "manifest.json").write_text(json.dumps(quick_job("reg")))
    server = server_factory(MN_BUNDLES_DIR=str(registry.parent))
    with server.client() as http:
        assert http.get("/health").json() == {"status": "ok"}
        job_id = http.post("/jobs", json=quick_job()).json()["id"]
        until(lambda: status_of(http, job_id) == "completed", what="completion")
        assert [j["job_id"] for j in http.get("/jobs").json()["data"]] == [job_id]
        assert http.get("/system/summary").json()["jobs"][0]["job_id"] == job_id
        assert http.get("/nodes").json()["data"][0]["name"] == "mn@e2e"
        assert http.get("/metrics").json()["jobs"] == {"total": 1, "by_status": {"completed": 1}}
        assert http.get(f"/jobs/{job_id}/events").json()["data"][-1]["type"] == "job_completed"
        stream = http.get(f"/jobs/{job_id}/events/stream")
        assert stream.headers["content-type"].startswith("text/event-stream")
        assert stream.text.rstrip().endswith('"type":"job_completed"}')
        _control_and_messages(http)
        _bundles(http)
        _resources(http)
        assert http.post("/jobs:cleanup").json()["deleted_count"] >= 1
        assert http.post("/jobs/cleanup?all=1").status_code == 200
        assert http.get("/openapi.json").json()["openapi"].startswith("3.")
        _error_statuses(http)
    assert server.stop() == 0


def _control_and_messages(http: httpx.Client) -> None:
    job_id = http.post("/jobs", json=waiting_job()).json()["id"]
    until(lambda: status_of(http, job_id) == "running")
    assert http.post(f"/jobs/{job_id}/pause").json() == {"status": "paused", "job_id": job_id}
    assert http.post(f"/jobs/{job_id}/pause").status_code == 400
    assert http.post(f"/jobs/{job_id}/resume").json() == {"status": "running", "job_id": job_id}
    assert http.post(f"/jobs/{job_id}/agents/ghost/messages", json={}).status_code == 404
    sent = http.post(f"/jobs/{job_id}/agents/r/messages", json={"n": 2})
    assert sent.json() == {"status": "delivered", "job_id": job_id, "agent_id": "r"}
    until(lambda: status_of(http, job_id) == "completed")
    assert http.post(f"/jobs/{job_id}/cancel").json() == {"error": "job is already in a terminal state"}
    other = http.post("/jobs", json=waiting_job("other")).json()["id"]
    assert http.post(f"/jobs/{other}/cancel").json() == {"status": "cancelled", "job_id": other}


def _bundles(http: httpx.Client) -> None:
    listed = http.get("/bundles").json()["data"]
    assert [b["bundle_id"] for b in listed] == ["reg"]
    assert http.post("/bundles/reg/reload").json()["changed"] is False
    assert http.post("/bundles/nope/reload").status_code == 404
    uploaded = http.post("/bundles/upload", files={"bundle": ("b.zip", bundle_zip(quick_job("up")))}).json()
    created = http.post("/jobs", json={"_bundle_path": uploaded["bundle_path"]})
    assert created.status_code == 201
    until(lambda: status_of(http, created.json()["id"]) == "completed")
    bad = http.post("/bundles/upload", files={"bundle": ("b.zip", bundle_zip(extra={"../x": "y"}))})
    assert (bad.status_code, bad.json()) == (400, {"error": "bundle contains unsafe paths"})


def _resources(http: httpx.Client) -> None:
    assert http.get("/resource").json()["mode"] == "single_node"
    assert http.post("/resource", json={"cpu": 50}).json()["limits"]["cpu"] == 50
    assert http.put("/resource", json={"cpu": "100"}).json()["limits"]["cpu"] == 100
    assert http.put("/resource", json={"cpu": 10}).json() == {"error": "cpu must be one of 25, 50, 75, 100"}


def _error_statuses(http: httpx.Client) -> None:
    assert (http.get("/jobs/nope").status_code, http.get("/jobs/nope").json()) == (
        404,
        {"error": "job nope was not found"},
    )
    assert http.get("/no/such/route").json() == {"error": "not found"}
    wrong = http.delete("/jobs")
    assert wrong.status_code == 405 and "GET" in wrong.headers["allow"]
    assert http.post("/jobs", content=b"{").json() == {"error": "Invalid or missing JSON payload"}
    assert http.post("/jobs", json={}).json() == {"error": "Empty JSON payload"}
    assert http.get("/jobs?limit=0").status_code == 400
    assert http.get("/health", headers={"X-Request-ID": "rid-1"}).headers["x-request-id"] == "rid-1"


def test_auth_and_size_limits_on_the_wire(server_factory: Factory) -> None:
    server = server_factory(MN_API_TOKEN="tok", MN_API_REQUEST_SIZE_LIMIT_BYTES="1000")
    with server.client() as http:
        assert http.get("/health").status_code == 200
        denied = http.get("/jobs")
        assert (denied.status_code, denied.headers["www-authenticate"]) == (401, "Bearer")
        auth = {"Authorization": "Bearer tok"}
        assert http.get("/jobs", headers=auth).status_code == 200
        big = http.post("/jobs", content=b"x" * 2000, headers=auth)
        assert (big.status_code, big.json()) == (413, {"error": "request_too_large", "limit_bytes": 1000})

        def chunked() -> Any:
            for _ in range(20):
                yield b"y" * 100

        streamed = http.post("/jobs", content=chunked(), headers=auth)
        assert streamed.status_code == 413
        unread = http.post("/jobs", content=b"z" * 300_000)  # refused before the body is read
        assert unread.status_code == 401
        assert http.get("/health").status_code == 200  # the connection was not left hanging
    stopped = time.monotonic()
    assert server.stop() == 0
    assert time.monotonic() - stopped < 4, "an unread request body kept a connection open"


def _notify_socket(tmp_path: Path) -> tuple[socket.socket, str]:
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.setblocking(False)
    return sock, path


def _datagrams(sock: socket.socket) -> list[str]:
    out = []
    while True:
        try:
            out.append(sock.recv(4096).decode())
        except BlockingIOError:
            return out


async def _store_state(data_dir: Path, job_id: str) -> tuple[str | None, dict[str, Any] | None]:
    async with SQLiteStore(data_dir / "store.sqlite3") as store:
        return await store.lease_owner(f"job:{job_id}"), await store.get_job(job_id)


def _sleepers(tag: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if tag in " ".join(proc.info["cmdline"] or []):
            found.append(proc)
    return found


def test_sigterm_drains_releases_leases_and_the_job_resumes(server_factory: Factory, tmp_path: Path) -> None:
    sock, path = _notify_socket(tmp_path)
    marker = tmp_path / "ran-once"
    tag = f"61.{os.getpid()}{int(time.time() * 1000) % 100000}"  # a sleep duration only this run uses
    script = f"if [ -e {marker} ]; then exit 0; fi; touch {marker}; exec sleep {tag}"
    env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000", "MN_SHUTDOWN_GRACE_SECONDS": "3"}
    server = server_factory(**env)
    seen: list[str] = []

    def received(prefix: str) -> list[str]:
        seen.extend(_datagrams(sock))
        return [d for d in seen if d.startswith(prefix)]

    with sock:
        ready = until(lambda: received("READY=1"), what="READY=1")
        assert "STATUS=serving http://127.0.0.1" in ready[0]
        with server.client() as http:
            job_id = http.post("/jobs", json=command_job(["sh", "-c", script], "drain")).json()["id"]
            until(lambda: http.get("/nodes").json()["data"][0]["executor_pools"]["default"]["in_use"] == 1)
            until(lambda: _sleepers(tag), what="the payload to start")
            server.signal(signal.SIGTERM)
            stopping = until(lambda: received("STOPPING=1"), what="STOPPING=1")
            assert "EXTEND_TIMEOUT_USEC=" in stopping[0]
            refused = http.post("/jobs", json=quick_job())  # during the grace period (long enough for a loaded machine)
            assert (refused.status_code, refused.json()) == (503, {"error": "node is shutting down"})
            assert http.get(f"/jobs/{job_id}").status_code == 200  # reads still answer while draining
        assert server.wait(20) == 0
        assert received("WATCHDOG=1")
        data_dir = tmp_path / "data"
        owner, record = asyncio.run(_store_state(data_dir, job_id))
        assert owner is None, "the job lease was not released"
        assert record is not None and record["status"] == "running"  # left as it was, not failed
        until(lambda: not _sleepers(tag), timeout=5, what="the killed payload to be gone")

        restarted = server_factory()
        with restarted.client() as http:
            until(lambda: status_of(http, job_id) == "completed", what="the resumed job to complete")
            types = [e["type"] for e in http.get(f"/jobs/{job_id}/events").json()["data"]]
            pool = http.get("/nodes").json()["data"][0]["executor_pools"]["default"]
        assert "job_recovery_started" in types and types[-1] == "job_completed"
        assert types.count("executor_lease_acquired") == types.count("executor_lease_released") == 2
        assert pool["in_use"] == 0 and pool["active"] == 0
        assert restarted.stop() == 0


def test_second_sigterm_skips_the_grace_period(server_factory: Factory, tmp_path: Path) -> None:
    server = server_factory(MN_SHUTDOWN_GRACE_SECONDS="60")
    with server.client() as http:
        http.post("/jobs", json=command_job(["sleep", "59.9"], "slow"))
        until(lambda: http.get("/nodes").json()["data"][0]["executor_pools"]["default"]["in_use"] == 1)
    started = time.monotonic()
    server.signal(signal.SIGTERM)
    time.sleep(0.5)
    server.signal(signal.SIGTERM)
    assert server.wait(20) == 0
    assert time.monotonic() - started < 15
    assert "skipping the rest of the drain grace period" in server.log()


def test_sighup_rescans_bundles_and_reports_reloading(server_factory: Factory, tmp_path: Path) -> None:
    sock, path = _notify_socket(tmp_path)
    registry = tmp_path / "registry"
    registry.mkdir()
    server = server_factory(MN_BUNDLES_DIR=str(registry), NOTIFY_SOCKET=path)
    with sock, server.client() as http:
        assert http.get("/bundles").json() == {"data": []}
        (registry / "late" / "payloads").mkdir(parents=True)
        (registry / "late" / "manifest.json").write_text(json.dumps(quick_job("late")))
        server.signal(signal.SIGHUP)
        until(lambda: http.get("/bundles").json()["data"], what="the rescan")
        assert until(lambda: [d for d in _datagrams(sock) if d.startswith("RELOADING=1")])
    assert server.stop() == 0


def test_prod_without_token_refuses_to_start(server_factory: Factory) -> None:
    server = server_factory(start=False, MN_ENV="prod")
    server.start(wait=False)
    assert server.wait(20) == 78
    assert "MN_ENV=prod requires MN_API_TOKEN" in server.log()


def test_port_in_use_fails_the_start(server_factory: Factory) -> None:
    server = server_factory(start=False)
    with socket.create_server(("127.0.0.1", server.port)):
        server.start(wait=False)
        assert server.wait(20) == 69
    assert "node start failed" in server.log()
