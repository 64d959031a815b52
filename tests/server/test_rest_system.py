"""System endpoints and cross-cutting REST behaviour: 404/405, request ids, auth, size limits, CORS,
the OpenAPI document, the shutdown gate."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from mn_server_testlib import ClientFactory, TestClient, quick_job
from starlette.routing import Route

from server.rest import endpoints

API = "/api/v1"


def test_health_is_exact(client: TestClient) -> None:
    response = client.get(f"{API}/health")
    assert response.status_code == 200
    assert response.content == b'{"status":"ok"}'
    assert response.headers["content-type"] == "application/json"


def test_summary_nodes_metrics(client: TestClient) -> None:
    job_id = client.post(f"{API}/jobs", json=quick_job()).json()["id"]
    deadline = time.monotonic() + 10
    while client.get(f"{API}/jobs/{job_id}").json()["job"]["status"] != "completed":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    summary = client.get(f"{API}/system/summary").json()
    assert set(summary) == {"nodes", "jobs"}
    assert summary["nodes"][0]["name"] == "mn@test" and summary["nodes"][0]["self?"] is True
    assert [j["job_id"] for j in summary["jobs"]] == [job_id]
    nodes = client.get(f"{API}/nodes").json()["data"]
    assert nodes[0]["executor_pools"]["default"]["capacity"] == 4
    assert client.get(f"{API}/metrics").json() == {
        "jobs": {"total": 1, "by_status": {"completed": 1}},
        "nodes": {"total": 1},
        "source": "system_summary",
    }


def test_unknown_route_and_wrong_method(client: TestClient) -> None:
    for path in (f"{API}/nope", "/elsewhere", f"{API}/jobs/x/y/z"):
        response = client.get(path)
        assert (response.status_code, response.json()) == (404, {"error": "not found"})
    response = client.delete(f"{API}/jobs")
    assert (response.status_code, response.json()) == (405, {"error": "method not allowed"})
    assert set(response.headers["allow"].split(", ")) == {"GET", "HEAD", "POST"}
    response = client.get(f"{API}/jobs/x/cancel")
    assert response.status_code == 405 and response.headers["allow"] == "POST"
    response = client.patch(f"{API}/resource", json={})
    assert set(response.headers["allow"].split(", ")) == {"GET", "HEAD", "POST", "PUT"}
    assert client.head(f"{API}/resource").status_code == 200


def test_request_id_echoed_or_generated(client: TestClient) -> None:
    assert client.get(f"{API}/health", headers={"X-Request-ID": "abc-123"}).headers["x-request-id"] == "abc-123"
    generated = client.get(f"{API}/health").headers["x-request-id"]
    assert len(generated) == 32
    assert client.get(f"{API}/health", headers={"X-Request-ID": "x" * 500}).headers["x-request-id"] != "x" * 500
    assert client.get(f"{API}/nope").headers["x-request-id"]  # errors carry it too


def test_bearer_token(client_factory: ClientFactory) -> None:
    client = client_factory(api_token="s3cret")
    denied = client.get(f"{API}/jobs")
    assert denied.status_code == 401
    assert denied.json() == {"error": "unauthorized", "detail": "missing or invalid bearer token"}
    assert denied.headers["www-authenticate"] == "Bearer"
    for header in ("Bearer wrong", "Basic s3cret", "s3cret", "Bearer"):
        assert client.get(f"{API}/jobs", headers={"Authorization": header}).status_code == 401
    assert client.get(f"{API}/health").status_code == 200
    assert client.get(f"{API}/jobs", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert client.get(f"{API}/jobs", headers={"Authorization": "bearer  s3cret"}).status_code == 200
    assert client.get(f"{API}/openapi.json").status_code == 401
    doc = client.get(f"{API}/openapi.json", headers={"Authorization": "Bearer s3cret"}).json()
    assert doc["security"] == [{"bearer": []}]
    assert doc["paths"][f"{API}/health"]["get"]["security"] == []


def test_request_size_limits(client_factory: ClientFactory) -> None:
    client = client_factory(api_request_size_limit_bytes=64, api_upload_size_limit_bytes=400)
    big = {"graph_id": "x" * 100}
    response = client.post(f"{API}/jobs", json=big)
    assert (response.status_code, response.json()) == (413, {"error": "request_too_large", "limit_bytes": 64})

    def chunks() -> Iterator[bytes]:  # no Content-Length: the body is counted as it streams
        yield b'{"graph_id": "'
        yield b"y" * 100
        yield b'"}'

    streamed = client.post(f"{API}/jobs", content=chunks())
    assert (streamed.status_code, streamed.json()) == (413, {"error": "request_too_large", "limit_bytes": 64})
    upload = client.post(f"{API}/bundles/upload", files={"bundle": ("b.zip", b"z" * 600)})
    assert upload.json() == {"error": "request_too_large", "limit_bytes": 400}
    small = client.post(f"{API}/bundles/upload", files={"bundle": ("b.zip", b"z" * 10)})
    assert small.json() == {"error": "invalid zip bundle"}  # over 64 bytes, under the upload limit


@pytest.mark.parametrize("value", ["abc", "-1", "1.5"])
def test_invalid_content_length(client: TestClient, value: str) -> None:
    response = client.post(f"{API}/jobs", content=b"{}", headers={"Content-Length": value})
    assert (response.status_code, response.json()) == (400, {"error": "invalid_content_length"})


def test_cors_only_when_configured(client_factory: ClientFactory) -> None:
    plain = client_factory()
    assert "access-control-allow-origin" not in plain.get(f"{API}/health", headers={"Origin": "http://ui"}).headers
    client = client_factory(api_cors_allow_origins="http://ui.example, http://other")
    simple = client.get(f"{API}/health", headers={"Origin": "http://ui.example"})
    assert simple.headers["access-control-allow-origin"] == "http://ui.example"
    preflight = client.options(
        f"{API}/jobs",
        headers={
            "Origin": "http://other",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "http://other"
    denied = client.get(f"{API}/health", headers={"Origin": "http://evil"})
    assert "access-control-allow-origin" not in denied.headers


def test_gate_after_runtime_closed(client: TestClient) -> None:
    client.app.state.gate.stopping = True  # type: ignore[attr-defined]
    response = client.get(f"{API}/jobs")
    assert (response.status_code, response.json()) == (503, {"error": "node is shutting down"})
    assert client.get(f"{API}/health").status_code == 200
    client.app.state.gate.stopping = False  # type: ignore[attr-defined]


def test_openapi_matches_routes(client: TestClient) -> None:
    doc = client.get(f"{API}/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    routes = {r.path: set(r.methods or ()) - {"HEAD"} for r in client.app.routes if isinstance(r, Route)}  # type: ignore[attr-defined]
    documented = {path: {m.upper() for m in ops} for path, ops in doc["paths"].items()}
    assert documented == routes
    ids = [op["operationId"] for ops in doc["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids))
    assert len(endpoints()) == len(doc["paths"])
    for ops in doc["paths"].values():
        for op in ops.values():
            for ref in _refs(op):
                assert ref.rsplit("/", 1)[1] in doc["components"]["schemas"], ref


def _refs(node: object) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield str(value)
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)
