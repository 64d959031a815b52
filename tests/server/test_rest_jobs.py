"""Job endpoints in-process (TestClient over a real Runtime on SQLite): success shapes and every error."""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

import pytest
from mn_server_testlib import TestClient, command_job, quick_job, runtime_of, waiting_job

API = "/api/v1"


def submit(client: TestClient, body: Any) -> str:
    response = client.post(f"{API}/jobs", json=body)
    assert response.status_code == 201, response.text
    created = response.json()
    assert set(created) == {"id", "status"} and created["status"] == "pending"
    return str(created["id"])


def wait_status(client: TestClient, job_id: str, *statuses: str, timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        details = client.get(f"{API}/jobs/{job_id}").json()
        if details["job"]["status"] in statuses:
            return details
        assert time.monotonic() < deadline, f"job {job_id} stayed {details['job']['status']}"
        time.sleep(0.02)


def test_submit_seed_form_and_details(client: TestClient) -> None:
    job_id = submit(client, quick_job())
    details = wait_status(client, job_id, "completed")
    assert set(details) == {"job", "summary", "agents", "recent_events", "sandboxes"}
    assert details["summary"]["job_id"] == job_id
    assert details["recent_events"][0]["type"] == "job_completed"  # newest first
    assert len(client.get(f"{API}/jobs/{job_id}", params={"event_limit": 2}).json()["recent_events"]) == 2
    assert client.get(f"{API}/jobs/{job_id}", params={"event_limit": 0}).json()["recent_events"] == []


def test_submit_manifest_json_with_payloads(client: TestClient, tmp_path: Path) -> None:
    import json

    body = {
        "version": 1,
        "manifest_json": json.dumps(quick_job("with_payloads")),
        "payloads": {"a.txt": "text", "bin/b.dat": {"base64": base64.b64encode(b"\x00\xff").decode()}},
        "force": False,
    }
    job_id = submit(client, body)
    root = tmp_path / "data" / "bundles" / job_id / "payloads"
    assert (root / "a.txt").read_text() == "text"
    assert (root / "bin" / "b.dat").read_bytes() == b"\x00\xff"
    assert wait_status(client, job_id, "completed")["job"]["manifest_ref"]["job_path"] == str(root.parent)


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"{", "Invalid or missing JSON payload"),
        (b"", "Invalid or missing JSON payload"),
        (b"[1, 2]", "Invalid or missing JSON payload"),
        (b"{}", "Empty JSON payload"),
        (b'{"manifest_json": "{"}', "manifest_json is malformed"),
        (b'{"manifest_json": 12}', "manifest_json is malformed"),
        (b'{"manifest_json": "[1]"}', "manifest_json must be an object"),
        (b'{"_bundle_path": "/etc"}', "unknown uploaded bundle"),
        (b'{"_bundle_path": 3}', "unknown uploaded bundle"),
    ],
)
def test_submit_errors(client: TestClient, body: bytes, error: str) -> None:
    response = client.post(f"{API}/jobs", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json() == {"error": error}


def test_submit_bad_payload_paths(client: TestClient) -> None:
    import json

    for key in ("../escape.txt", "/abs.txt"):
        body = {"manifest_json": json.dumps(quick_job()), "payloads": {key: "x"}}
        response = client.post(f"{API}/jobs", json=body)
        assert response.status_code == 400
        assert response.json() == {"error": f"payload path must be relative and stay inside payloads/: {key}"}
    bad_b64 = {"manifest_json": json.dumps(quick_job()), "payloads": {"a": {"base64": "!!"}}}
    assert client.post(f"{API}/jobs", json=bad_b64).status_code == 400
    assert client.post(f"{API}/jobs", json={"manifest_json": "{}", "payloads": []}).status_code == 400


def test_submit_invalid_manifest_lists_every_error(client: TestClient) -> None:
    response = client.post(f"{API}/jobs", json={"graph_id": "g", "nodes": []})
    assert response.status_code == 400
    body = response.json()
    assert len(body["errors"]) >= 2
    assert body["error"] == "; ".join(body["errors"])
    assert client.get(f"{API}/jobs").json() == {"data": []}  # nothing written


def test_list_jobs_filters(client: TestClient) -> None:
    done = submit(client, quick_job())
    wait_status(client, done, "completed")
    running = submit(client, waiting_job())
    wait_status(client, running, "running")
    ids = [j["job_id"] for j in client.get(f"{API}/jobs").json()["data"]]
    assert ids == [running, done]  # newest first
    assert [j["job_id"] for j in client.get(f"{API}/jobs?limit=1").json()["data"]] == [running]
    for flag in ("false", "0"):
        assert [j["job_id"] for j in client.get(f"{API}/jobs?include_terminal={flag}").json()["data"]] == [running]
    assert [j["job_id"] for j in client.get(f"{API}/jobs?status=completed").json()["data"]] == [done]
    assert len(client.get(f"{API}/jobs?status=completed,running").json()["data"]) == 2
    assert client.get(f"{API}/jobs?live_only=true").status_code == 200


@pytest.mark.parametrize(
    ("query", "error"),
    [
        ("limit=0", "limit must be a positive integer up to 2147483647 (got '0')"),
        ("limit=x", "limit must be a positive integer up to 2147483647 (got 'x')"),
        ("limit=99999999999", "limit must be a positive integer up to 2147483647 (got '99999999999')"),
        ("include_terminal=maybe", "include_terminal must be true or false (got 'maybe')"),
        ("live_only=", "live_only must be true or false (got '')"),
    ],
)
def test_list_jobs_bad_query(client: TestClient, query: str, error: str) -> None:
    response = client.get(f"{API}/jobs?{query}")
    assert response.status_code == 400
    assert response.json() == {"error": error}


def test_list_jobs_bad_status(client: TestClient) -> None:
    response = client.get(f"{API}/jobs?status=done")
    assert response.status_code == 400
    assert response.json()["error"].startswith("status must be a comma list of job statuses")


def test_unknown_job_is_404_everywhere(client: TestClient) -> None:
    expected = {"error": "job nope was not found"}
    for method, path in [
        ("GET", "/jobs/nope"),
        ("GET", "/jobs/nope/events"),
        ("GET", "/jobs/nope/events/stream"),
        ("POST", "/jobs/nope/cancel"),
        ("POST", "/jobs/nope/pause"),
        ("POST", "/jobs/nope/resume"),
    ]:
        response = client.request(method, API + path)
        assert (response.status_code, response.json()) == (404, expected), path
    response = client.post(f"{API}/jobs/nope/agents/r/messages", json={"n": 1})
    assert (response.status_code, response.json()) == (404, expected)


def test_get_job_bad_event_limit(client: TestClient) -> None:
    job_id = submit(client, quick_job())
    assert client.get(f"{API}/jobs/{job_id}?event_limit=-1").status_code == 400


def test_failed_job_details_carry_failure(client: TestClient) -> None:
    job_id = submit(client, command_job(["false"], "fails"))
    details = wait_status(client, job_id, "failed")
    assert details["failure"]["schema_version"] == "mn.error.v1"


def test_pause_resume_cancel(client: TestClient) -> None:
    job_id = submit(client, waiting_job())
    wait_status(client, job_id, "running")
    control = lambda verb: client.post(f"{API}/jobs/{job_id}/{verb}")  # noqa: E731
    assert control("resume").json() == {"error": "job is not paused"}
    assert control("pause").json() == {"status": "paused", "job_id": job_id}
    paused = control("pause")
    assert (paused.status_code, paused.json()) == (400, {"error": "job is not running"})
    assert control("resume").json() == {"status": "running", "job_id": job_id}
    assert control("cancel").json() == {"status": "cancelled", "job_id": job_id}
    again = control("cancel")
    assert (again.status_code, again.json()) == (400, {"error": "job is already in a terminal state"})
    assert control("pause").json() == {"error": "job is not running"}
    assert control("resume").json() == {"error": "job is not paused"}


def test_control_without_coordinator(client: TestClient) -> None:
    """A live record whose coordinator is gone: control answers 400, cancel is the forced cancel."""
    job_id = submit(client, waiting_job())
    wait_status(client, job_id, "running")
    rt = runtime_of(client)

    async def orphan() -> None:
        await rt.coordinators[job_id].shutdown()
        rt.coordinators.pop(job_id)

    client.portal.call(orphan)  # type: ignore[union-attr]
    expected = {"error": f"job {job_id} is not running in the connected cluster"}
    for verb in ("pause", "resume"):
        response = client.post(f"{API}/jobs/{job_id}/{verb}")
        assert (response.status_code, response.json()) == (400, expected)
    assert client.post(f"{API}/jobs/{job_id}/agents/r/messages", json={}).json() == expected
    assert client.post(f"{API}/jobs/{job_id}/cancel").json() == {"status": "cancelled", "job_id": job_id}
    job = client.get(f"{API}/jobs/{job_id}").json()["job"]
    assert job["result"] == {"reason": "forced cancellation of orphaned job"}


def test_send_message(client: TestClient) -> None:
    job_id = submit(client, waiting_job())
    wait_status(client, job_id, "running")
    ghost = client.post(f"{API}/jobs/{job_id}/agents/ghost/messages", json={"n": 2})
    assert (ghost.status_code, ghost.json()) == (404, {"error": f"agent ghost is not running for job {job_id}"})
    not_object = client.post(f"{API}/jobs/{job_id}/agents/r/messages", json=[1])
    assert not_object.status_code == 400
    broken = client.post(f"{API}/jobs/{job_id}/agents/r/messages", content=b"{")
    assert broken.json() == {"error": "Invalid or missing JSON payload"}
    sent = client.post(f"{API}/jobs/{job_id}/agents/r/messages", json={"n": 2})
    assert sent.json() == {"status": "delivered", "job_id": job_id, "agent_id": "r"}
    wait_status(client, job_id, "completed")
    late = client.post(f"{API}/jobs/{job_id}/agents/r/messages", json={"n": 3})
    assert late.json() == {"error": f"job {job_id} is not running in the connected cluster"}


def test_events(client: TestClient) -> None:
    job_id = submit(client, quick_job())
    wait_status(client, job_id, "completed")
    events = client.get(f"{API}/jobs/{job_id}/events").json()["data"]
    assert events[0]["type"] == "job_pending" and events[-1]["type"] == "job_completed"
    last_two = client.get(f"{API}/jobs/{job_id}/events?limit=2").json()["data"]
    assert last_two == events[-2:]
    assert client.get(f"{API}/jobs/{job_id}/events?limit=0").status_code == 400


@pytest.mark.parametrize("path", ["/jobs/cleanup", "/jobs:cleanup"])
def test_cleanup(client: TestClient, path: str) -> None:
    done = submit(client, quick_job())
    wait_status(client, done, "completed")
    active = submit(client, waiting_job())
    wait_status(client, active, "running")
    assert client.post(API + path).json() == {"deleted_count": 1, "deleted_jobs": [done]}
    assert client.get(f"{API}/jobs/{done}").status_code == 404
    assert client.post(API + path, params={"all": "true"}).json() == {"deleted_count": 1, "deleted_jobs": [active]}
    assert client.get(f"{API}/jobs").json() == {"data": []}
    assert client.post(API + path, params={"all": "sure"}).status_code == 400


def test_submissions_refused_while_draining(client: TestClient) -> None:
    runtime_of(client).accepting = False
    response = client.post(f"{API}/jobs", json=quick_job())
    assert (response.status_code, response.json()) == (503, {"error": "node is shutting down"})
    assert client.get(f"{API}/jobs").status_code == 200  # reads still answer
    runtime_of(client).accepting = True


def test_agent_graph(client: TestClient) -> None:
    job_id = submit(client, quick_job())
    wait_status(client, job_id, "completed")
    graph = client.get(f"{API}/jobs/{job_id}/agent-graph").json()
    assert (graph["job_id"], graph["graph_id"], graph["status"]) == (job_id, "quick", "completed")
    assert [n["id"] for n in graph["nodes"]] == ["r", "out"]
    assert graph["nodes"][1]["agent_type"] == "aggregator" and graph["nodes"][1]["processed_messages"] == 1
    edge = graph["edges"][0]
    assert (edge["source"], edge["target"], edge["source_event"], edge["count"]) == ("r", "out", "manifest", 1)
    assert edge["last_seen_at"]
    assert graph["stats"]["agent_count"] == 2 and graph["stats"]["message_count"] == 2
    assert client.get(f"{API}/jobs/nope/agent-graph").status_code == 404


def test_dead_letters(client: TestClient) -> None:
    out = '{"emit_messages": [{"type": "t", "to": "ghost", "body": {"a": 1}}]}'
    job_id = submit(client, command_job(["sh", "-c", f"echo '{out}'"], "dead"))
    wait_status(client, job_id, "completed")
    letters = client.get(f"{API}/jobs/{job_id}/dead-letters").json()
    assert letters["job_id"] == job_id
    [letter] = letters["data"]
    assert (letter["index"], letter["agent_id"], letter["reason"]) == (0, "ghost", "agent ghost is not running")
    events = client.get(f"{API}/jobs/{job_id}/events").json()["data"]
    assert events[letter["event_index"]]["type"] == "dead_letter"
    assert client.get(f"{API}/jobs/nope/dead-letters").status_code == 404
