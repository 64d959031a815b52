"""Every RPC of the three services on a real ``mn server`` through a real channel (raw stubs).

Checks the JSON-safe convention (``*_json`` text, ``version`` 1 on every response and in every
JSON object), the degraded reads, payload files written safely, and the status codes with the
spec's exact messages.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from mn_grpc_testlib import GrpcServer, command_job, quick_job, until, waiting_job

from mncore._proto import cluster_pb2, cluster_pb2_grpc, job_pb2, job_pb2_grpc, observability_pb2
from mncore._proto import observability_pb2_grpc as obs_grpc

pytestmark = pytest.mark.slow


class Stubs:
    def __init__(self, channel: grpc.Channel) -> None:
        self.jobs = job_pb2_grpc.JobServiceStub(channel)
        self.cluster = cluster_pb2_grpc.ClusterServiceStub(channel)
        self.obs = obs_grpc.ObservabilityServiceStub(channel)

    def submit(self, manifest: dict[str, Any], payloads: dict[str, bytes] | None = None) -> str:
        request = job_pb2.SubmitJobRequest(manifest_json=json.dumps(manifest), payloads=payloads or {}, version=1)
        response = self.jobs.SubmitJob(request, timeout=10)
        assert (response.status, response.version) == ("pending", 1)
        return str(response.job_id)

    def details(self, job_id: str) -> dict[str, Any]:
        response = self.jobs.GetJob(job_pb2.GetJobRequest(job_id=job_id, version=1), timeout=10)
        assert response.version == 1
        value: dict[str, Any] = json.loads(response.job_json)
        return value

    def status(self, job_id: str) -> str:
        return str(self.details(job_id)["job"]["status"])

    def events(self, job_id: str, **options: Any) -> list[dict[str, Any]]:
        request = observability_pb2.StreamEventsRequest(job_id=job_id, version=1, **options)
        out = []
        for response in self.obs.StreamEvents(request, timeout=20):
            assert response.version == 1
            out.append(json.loads(response.event_json))
        return out


@pytest.fixture(scope="module")
def stubs(server: GrpcServer) -> Iterator[Stubs]:
    with grpc.insecure_channel(server.target) as channel:
        yield Stubs(channel)


def code_of(call: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code(), info.value.details()


def test_submit_get_list_and_stream_a_job(stubs: Stubs) -> None:
    job_id = stubs.submit(quick_job("grpc_quick"))
    events = stubs.events(job_id, follow=True, heartbeat_interval_ms=200)
    assert events[0]["type"] == "job_pending" and events[-1]["type"] == "job_completed"
    assert all(e["version"] == 1 and e["job_id"] == job_id for e in events)
    details = stubs.details(job_id)
    assert details["version"] == 1
    assert set(details) >= {"job", "summary", "agents", "recent_events", "sandboxes"}
    assert details["job"]["status"] == "completed"
    listed = stubs.jobs.ListJobs(job_pb2.ListJobsRequest(limit=0, include_terminal=True, version=1), timeout=10)
    body = json.loads(listed.jobs_json)
    assert listed.version == 1 and body["version"] == 1
    assert job_id in [j["job_id"] for j in body["data"]]
    active = json.loads(stubs.jobs.ListJobs(job_pb2.ListJobsRequest(include_terminal=False)).jobs_json)
    assert job_id not in [j["job_id"] for j in active["data"]]


def test_list_jobs_limit(stubs: Stubs) -> None:
    for _ in range(2):
        stubs.submit(quick_job("grpc_limit"))
    one = json.loads(stubs.jobs.ListJobs(job_pb2.ListJobsRequest(limit=1, include_terminal=True)).jobs_json)
    assert len(one["data"]) == 1


def test_unknown_job_reads_degrade_and_controls_are_not_found(stubs: Stubs) -> None:
    response = stubs.jobs.GetJob(job_pb2.GetJobRequest(job_id="nope", version=1))
    assert (json.loads(response.job_json), response.version) == ({"version": 1}, 1)
    for method in ("CancelJob", "PauseJob", "ResumeJob"):
        request = getattr(job_pb2, f"{method}Request")(job_id="nope", version=1)
        assert code_of(lambda m=method, r=request: getattr(stubs.jobs, m)(r)) == (
            grpc.StatusCode.NOT_FOUND,
            "job nope was not found",
        )
    request = observability_pb2.StreamEventsRequest(job_id="nope", follow=True)
    assert code_of(lambda: list(stubs.obs.StreamEvents(request))) == (
        grpc.StatusCode.NOT_FOUND,
        "job nope was not found",
    )


def test_submit_with_payloads_writes_the_bundle(stubs: Stubs, server: GrpcServer) -> None:
    manifest = command_job(["cat", "{workdir}/data/hello.txt"], graph_id="grpc_payloads", upload_path="data")
    job_id = stubs.submit(manifest, {"data/hello.txt": b"hello from grpc", "bin/raw.dat": b"\x00\xff"})
    until(lambda: stubs.status(job_id) in ("completed", "failed"), what="payload job")
    assert stubs.status(job_id) == "completed", stubs.details(job_id)
    stored = Path(server.env["MN_DATA_DIR"]) / "bundles" / job_id
    assert (stored / "payloads" / "data" / "hello.txt").read_bytes() == b"hello from grpc"
    assert (stored / "payloads" / "bin" / "raw.dat").read_bytes() == b"\x00\xff"
    assert json.loads((stored / "manifest.json").read_text())["graph_id"] == "grpc_payloads"


@pytest.mark.parametrize("key", ["../escape.txt", "/abs.txt", "a/../../b.txt"])
def test_unsafe_payload_paths_are_refused(stubs: Stubs, key: str) -> None:
    request = job_pb2.SubmitJobRequest(manifest_json=json.dumps(quick_job()), payloads={key: b"x"})
    assert code_of(lambda: stubs.jobs.SubmitJob(request)) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        f"payload path must be relative and stay inside payloads/: {key}",
    )


def test_invalid_submissions(stubs: Stubs) -> None:
    for text in ("{", ""):
        request = job_pb2.SubmitJobRequest(manifest_json=text)
        assert code_of(lambda r=request: stubs.jobs.SubmitJob(r)) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "manifest_json is malformed",
        )
    request = job_pb2.SubmitJobRequest(manifest_json="[1]")
    assert code_of(lambda: stubs.jobs.SubmitJob(request))[0] == grpc.StatusCode.INVALID_ARGUMENT
    bad = job_pb2.SubmitJobRequest(manifest_json=json.dumps({"graph_id": "g", "nodes": []}))
    with pytest.raises(grpc.RpcError) as info:
        stubs.jobs.SubmitJob(bad)
    errors = dict(info.value.trailing_metadata())["mn-errors-bin"]
    assert info.value.details() == "; ".join(json.loads(errors))


def test_pause_resume_send_cancel(stubs: Stubs) -> None:
    job_id = stubs.submit(waiting_job("grpc_control"))
    until(lambda: stubs.status(job_id) == "running", what="running")

    def control(method: str) -> Any:
        return getattr(stubs.jobs, method)(getattr(job_pb2, f"{method}Request")(job_id=job_id, version=1))

    paused = control("PauseJob")
    assert (paused.job_id, paused.status, paused.version) == (job_id, "paused", 1)
    assert code_of(lambda: control("PauseJob")) == (grpc.StatusCode.FAILED_PRECONDITION, "job is not running")
    assert control("ResumeJob").status == "running"
    assert code_of(lambda: control("ResumeJob")) == (grpc.StatusCode.FAILED_PRECONDITION, "job is not paused")

    def send(agent: str, text: str) -> Any:
        request = job_pb2.SendMessageRequest(job_id=job_id, agent_id=agent, message_json=text, version=1)
        return stubs.jobs.SendMessage(request)

    assert code_of(lambda: send("ghost", "{}")) == (
        grpc.StatusCode.NOT_FOUND,
        f"agent ghost is not running for job {job_id}",
    )
    assert code_of(lambda: send("r", "{nope"))[0] == grpc.StatusCode.INVALID_ARGUMENT
    assert code_of(lambda: send("r", "[1, 2]"))[0] == grpc.StatusCode.INVALID_ARGUMENT
    delivered = send("r", json.dumps({"n": 2}))
    assert (delivered.job_id, delivered.status, delivered.version) == (job_id, "delivered", 1)
    until(lambda: stubs.status(job_id) == "completed", what="completion after the message")
    assert code_of(lambda: control("CancelJob")) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "job is already in a terminal state",
    )
    other = stubs.submit(waiting_job("grpc_cancel"))
    assert stubs.jobs.CancelJob(job_pb2.CancelJobRequest(job_id=other)).status == "cancelled"
    assert stubs.events(other)[-1]["type"] == "job_cancelled"


def test_stream_events_follow_with_heartbeats_and_limit(stubs: Stubs) -> None:
    job_id = stubs.submit(waiting_job("grpc_follow"))
    until(lambda: stubs.status(job_id) == "running", what="running")
    assert len(stubs.events(job_id, limit=2)) == 2
    request = observability_pb2.StreamEventsRequest(job_id=job_id, follow=True, heartbeat_interval_ms=100)
    seen = []
    for response in stubs.obs.StreamEvents(request, timeout=20):
        event = json.loads(response.event_json)
        seen.append(event["type"])
        if event["type"] == "stream_heartbeat" and seen.count("stream_heartbeat") == 2:
            assert set(event) == {"type", "job_id", "timestamp", "version"}
            message = job_pb2.SendMessageRequest(job_id=job_id, agent_id="r", message_json='{"n": 2}')
            stubs.jobs.SendMessage(message)
    assert seen[-1] == "job_completed"  # the stream ended by itself after the terminal event
    assert seen.count("job_pending") == 1


def test_clear_jobs_deletes_terminal_jobs_only(stubs: Stubs) -> None:
    done = stubs.submit(quick_job("grpc_clear"))
    until(lambda: stubs.status(done) == "completed", what="completion")
    active = stubs.submit(waiting_job("grpc_clear_active"))
    response = stubs.jobs.ClearJobs(job_pb2.ClearJobsRequest(version=1))
    assert response.version == 1 and response.cleared_count >= 1
    assert json.loads(stubs.jobs.GetJob(job_pb2.GetJobRequest(job_id=done)).job_json) == {"version": 1}
    assert stubs.status(active) == "running"
    stubs.jobs.CancelJob(job_pb2.CancelJobRequest(job_id=active))


def test_cluster_service(stubs: Stubs) -> None:
    summary = stubs.cluster.GetSystemSummary(cluster_pb2.GetSystemSummaryRequest(version=1))
    body = json.loads(summary.summary_json)
    assert summary.version == 1 and body["version"] == 1
    assert body["nodes"][0]["name"] == "mn@grpc-test" and isinstance(body["jobs"], list)
    assert "executor_pools" in body["nodes"][0]
    report = json.loads(stubs.cluster.GetResource(cluster_pb2.GetResourceRequest(version=1)).resource_json)
    assert report["version"] == 1
    set_request = cluster_pb2.SetResourceRequest(resource_json=json.dumps({"cpu": 50, "version": 1}), version=1)
    updated = json.loads(stubs.cluster.SetResource(set_request).resource_json)
    assert updated["version"] == 1
    assert json.dumps(updated).count("50") >= 1
    bad = cluster_pb2.SetResourceRequest(resource_json=json.dumps({"cpu": 33}))
    assert code_of(lambda: stubs.cluster.SetResource(bad)) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "cpu must be one of 25, 50, 75, 100",
    )
    malformed = cluster_pb2.SetResourceRequest(resource_json="{")
    code, message = code_of(lambda: stubs.cluster.SetResource(malformed))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and message.startswith("resource body must be valid JSON: ")
    restore = cluster_pb2.SetResourceRequest(resource_json=json.dumps({"cpu": 100}))
    stubs.cluster.SetResource(restore)
