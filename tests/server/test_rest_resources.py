"""``GET/POST/PUT /resource``: the report, limits (validated, persisted), and how the CPU limit caps pools."""

from __future__ import annotations

import time

import pytest
from mn_server_testlib import ClientFactory, TestClient, command_job, runtime_of

from mncore.resources import gpus

API = "/api/v1"


def test_report_shape(client: TestClient) -> None:
    report = client.get(f"{API}/resource").json()
    assert report["mode"] == "single_node" and report["node_count"] == 1
    assert report["limits"] == {"cpu": 100, "gpu": 100, "memory": 100, "disk": 100}
    totals = report["totals"]
    assert totals["cpu_cores"] >= 1 and totals["memory_total_gb"] > 0 and totals["disk_gb"] > 0
    node = report["nodes"][0]
    assert node["name"] == "mn@test" and node["self"] is True
    assert totals["gpu_count"] == len(node["gpu"]) == len(node["devices"]) == len(gpus())
    if not gpus():  # no NVIDIA driver: zero GPUs, no cuda driver, nothing fails
        assert node["drivers"] == [] and totals["gpu_memory_total_mb"] == 0


@pytest.mark.parametrize("method", ["POST", "PUT"])
def test_set_limits(client: TestClient, method: str) -> None:
    report = client.request(method, f"{API}/resource", json={"cpu": 25, "memory": "50", "version": 1}).json()
    assert report["limits"] == {"cpu": 25, "gpu": 100, "memory": 50, "disk": 100}
    assert report["usable"]["cpu_cores"] == report["totals"]["cpu_cores"] * 25 // 100
    assert client.get(f"{API}/resource").json()["limits"]["cpu"] == 25
    stored = client.portal.call(runtime_of(client).store.get_doc, "resource:limits")  # type: ignore[union-attr]
    assert stored == {"cpu": 25, "gpu": 100, "memory": 50, "disk": 100}
    pools = client.get(f"{API}/nodes").json()["data"][0]["executor_pools"]
    assert pools["default"]["capacity"] == 1  # max(1, floor(4 * 25 / 100))


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"{}", "at least one of cpu, gpu, memory, or disk is required"),
        (b'{"version": 1}', "at least one of cpu, gpu, memory, or disk is required"),
        (b"[25]", "at least one of cpu, gpu, memory, or disk is required"),
        (b'{"network": 25}', "resource type must be one of cpu, gpu, memory, or disk"),
        (b'{"cpu": 30}', "cpu must be one of 25, 50, 75, 100"),
        (b'{"gpu": "lots"}', "gpu must be one of 25, 50, 75, 100"),
        (b'{"disk": true}', "disk must be one of 25, 50, 75, 100"),
    ],
)
def test_limit_errors(client: TestClient, body: bytes, error: str) -> None:
    response = client.post(f"{API}/resource", content=body, headers={"Content-Type": "application/json"})
    assert (response.status_code, response.json()) == (400, {"error": error})
    assert client.get(f"{API}/resource").json()["limits"]["cpu"] == 100  # unchanged


def test_unparsable_body(client: TestClient) -> None:
    response = client.put(f"{API}/resource", content=b"{cpu")
    assert response.status_code == 400
    assert response.json()["error"].startswith("resource body must be valid JSON: ")


def test_limits_survive_restart_and_cap_admission(client_factory: ClientFactory) -> None:
    first = client_factory()
    first.post(f"{API}/resource", json={"cpu": 25})
    first.__exit__(None, None, None)
    client = client_factory()  # same data dir: a new runtime reads the stored limits
    assert client.get(f"{API}/resource").json()["limits"]["cpu"] == 25
    ids = [client.post(f"{API}/jobs", json=command_job(["sleep", "5"], f"s{i}")).json()["id"] for i in range(2)]
    deadline = time.monotonic() + 10
    while (pool := client.get(f"{API}/nodes").json()["data"][0]["executor_pools"]["default"])["queued"] < 1:
        assert time.monotonic() < deadline, pool
        time.sleep(0.02)
    assert pool == {"capacity": 1, "in_use": 1, "available": 0, "queued": 1, "active": 1}
    for job_id in ids:
        client.post(f"{API}/jobs/{job_id}/cancel")
