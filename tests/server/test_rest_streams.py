"""``GET /jobs/{id}/events/stream``: SSE frames, replay, Last-Event-ID, live events, heartbeats, end."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from mn_server_testlib import TestClient, quick_job, waiting_job

API = "/api/v1"


def parse(text: str) -> list[dict[str, Any]]:
    frames = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        fields = dict(line.split(": ", 1) for line in block.split("\n"))
        fields["data"] = json.loads(fields["data"])
        frames.append(fields)
    return frames


def finished_job(client: TestClient) -> str:
    job_id = str(client.post(f"{API}/jobs", json=quick_job()).json()["id"])
    deadline = time.monotonic() + 10
    while client.get(f"{API}/jobs/{job_id}").json()["job"]["status"] != "completed":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    return job_id


def test_replays_and_ends_after_terminal_event(client: TestClient) -> None:
    job_id = finished_job(client)
    response = client.get(f"{API}/jobs/{job_id}/events/stream")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-accel-buffering"] == "no"
    frames = parse(response.text)
    stored = client.get(f"{API}/jobs/{job_id}/events").json()["data"]
    assert [f["id"] for f in frames] == [str(i) for i in range(len(stored))]
    assert {f["event"] for f in frames} == {"job_event"}
    assert [f["data"] for f in frames] == stored
    assert frames[-1]["data"]["type"] == "job_completed"
    first_line = response.text.split("\n\n")[0].split("\n")[2]
    assert first_line == "data: " + json.dumps(stored[0], sort_keys=True, separators=(",", ":"))


def test_last_event_id_and_replay_false(client: TestClient) -> None:
    job_id = finished_job(client)
    resumed = parse(client.get(f"{API}/jobs/{job_id}/events/stream", headers={"Last-Event-ID": "2"}).text)
    assert resumed[0]["id"] == "3"
    assert parse(client.get(f"{API}/jobs/{job_id}/events/stream?replay=false").text) == []
    bad = client.get(f"{API}/jobs/{job_id}/events/stream", headers={"Last-Event-ID": "x"})
    assert bad.status_code == 400
    assert client.get(f"{API}/jobs/{job_id}/events/stream?replay=nah").status_code == 400


def test_live_events_heartbeats_and_end(client: TestClient) -> None:
    job_id = client.post(f"{API}/jobs", json=waiting_job()).json()["id"]
    seen: list[dict[str, Any]] = []

    def complete_later() -> None:
        time.sleep(0.8)  # > 2 heartbeat periods (0.3 s in these tests)
        client.post(f"{API}/jobs/{job_id}/agents/r/messages", json={"n": 2})

    sender = threading.Thread(target=complete_later)
    sender.start()
    with client.stream("GET", f"{API}/jobs/{job_id}/events/stream") as response:
        buffer = ""
        for chunk in response.iter_text():
            buffer += chunk
        seen = parse(buffer)
    sender.join()
    events = [f for f in seen if f["event"] == "job_event"]
    assert [int(f["id"]) for f in events] == list(range(len(events)))  # no gap, no duplicate
    assert events[-1]["data"]["type"] == "job_completed"
    beats = [f for f in seen if f["event"] == "heartbeat"]
    assert beats and set(beats[0]["data"]) == {"job_id", "timestamp"} and beats[0]["data"]["job_id"] == job_id
    assert "id" not in beats[0]
    assert [f["data"] for f in events] == client.get(f"{API}/jobs/{job_id}/events").json()["data"]
