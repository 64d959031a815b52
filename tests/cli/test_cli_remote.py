"""``mn`` end to end against a running ``mn server`` (found at MN_GRPC_TARGET), ``--json`` parsed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mn_cli_testlib import Mn, write_bundle
from mn_grpc_testlib import ADMIN_TOKEN, AUTH_TOKEN, GrpcServer, command_job, quick_job, until, waiting_job

from mncore.sdk import Client

pytestmark = pytest.mark.slow


def test_run_follows_the_job_on_the_server(remote: Mn, server: GrpcServer, tmp_path: Path) -> None:
    bundle = write_bundle(tmp_path / "quick", quick_job("cli_run"))
    record = remote.data("run", str(bundle))
    assert record["status"] == "completed" and record["graph_id"] == "cli_run"
    with Client(server.target, auth_token="", admin_token="") as mn:  # it ran in the server, not here
        assert mn.get_job(record["job_id"])["job"]["status"] == "completed"
    human = remote("run", str(bundle))
    assert human.returncode == 0 and "completed" in human.stdout


def test_run_timeout_detaches_from_the_server_job(remote: Mn, server: GrpcServer, tmp_path: Path) -> None:
    bundle = write_bundle(tmp_path / "slow", command_job(["sleep", "30"], graph_id="cli_slow_remote"))
    failed = remote.json("run", str(bundle), "--timeout", "1", code=1)["error"]
    assert "keeps running on the server" in failed["message"]
    job_id = failed["message"].split("job ", 1)[1].split(" ", 1)[0]
    assert remote.data("job", "inspect", job_id)["status"] == "running"
    assert remote.data("job", "cancel", job_id)["status"] == "cancelled"


def test_run_detach_and_job_commands(remote: Mn, tmp_path: Path) -> None:
    bundle = write_bundle(tmp_path / "wait", waiting_job("cli_wait"), {"notes.txt": b"n"})
    submitted = remote.data("run", str(bundle), "--detach")
    job_id = submitted["job_id"]
    assert submitted["status"] == "pending"
    until(lambda: remote.data("job", "inspect", job_id)["status"] == "running", what="running")
    assert job_id in [j["job_id"] for j in remote.data("job", "list", "--running-only")]
    assert remote.data("job", "list", "--limit", "1")[0]["job_id"] == job_id
    details = remote.data("job", "status", job_id)
    assert set(details) >= {"job", "summary", "agents", "recent_events", "sandboxes"}
    agents = remote.data("job", "agents", job_id)
    assert {a["agent_id"] for a in agents} == {"r", "out"}
    assert all({"status", "mailbox_depth", "processed_messages"} <= set(a) for a in agents)
    assert remote.data("job", "events", job_id, "--limit", "2")[-1]["job_id"] == job_id
    assert remote.data("job", "pause", job_id) == {"job_id": job_id, "status": "paused"}
    failed = remote.json("job", "pause", job_id, code=1)
    assert failed["error"]["message"] == "job is not running"
    assert remote.data("job", "resume", job_id)["status"] == "running"
    sent = remote.data("job", "send", job_id, "r", '{"n": 2}')
    assert sent == {"job_id": job_id, "agent_id": "r", "status": "delivered"}
    until(lambda: remote.data("job", "inspect", job_id)["status"] == "completed", what="completion")
    assert remote.json("job", "cancel", job_id, code=1)["error"]["message"] == "job is already in a terminal state"
    saved = remote.data("job", "result", job_id, "--output", str(tmp_path / "out"))
    assert json.loads(Path(saved["events"]).read_text())[-1]["type"] == "job_completed"


def test_events_follow_streams_ndjson_until_the_end(remote: Mn, server: GrpcServer, tmp_path: Path) -> None:
    bundle = write_bundle(tmp_path / "wait", waiting_job("cli_follow"))
    job_id = remote.data("job", "submit", str(bundle))["job_id"]
    until(lambda: remote.data("job", "inspect", job_id)["status"] == "running", what="running")
    with Client(server.target, auth_token="", admin_token="") as mn:
        mn.send_message(job_id, "r", {"n": 2})
    for alias in (("job", "events"), ("events",)):
        items = remote.stream(*alias, job_id, "--follow")
        assert items[-1] == {"schema": "mn.cli.stream/v1", "type": "complete", "job_id": job_id}
        assert items[-2]["event"]["type"] == "job_completed"
        assert {i["type"] for i in items[:-1]} == {"event"}


def test_job_monitor_json_stream(remote: Mn, tmp_path: Path) -> None:
    job_id = remote.data("run", str(write_bundle(tmp_path / "q", quick_job("cli_mon"))))["job_id"]
    for command in (("job", "monitor", job_id), ("monitor", job_id)):
        items = remote.stream(*command)
        assert items[0]["type"] == "snapshot" and items[0]["details"]["job"]["job_id"] == job_id
        assert items[-1]["type"] == "complete" and items[-1]["details"]["job"]["status"] == "completed"


def test_cancel_cancel_all_and_cleanup(remote: Mn, tmp_path: Path) -> None:
    bundle = write_bundle(tmp_path / "wait", waiting_job("cli_cancel"))
    first, second, third = (remote.data("job", "submit", str(bundle))["job_id"] for _ in range(3))
    assert remote.data("job", "cancel", first) == {"job_id": first, "status": "cancelled"}
    cancelled = remote.data("job", "cancel-all", "--yes")
    assert {c["job_id"] for c in cancelled} >= {second, third}
    assert remote("job", "cancel-all", "--yes").stdout.strip() == "no active jobs"
    cleared = remote.data("job", "cleanup", "--yes")
    assert cleared["deleted_count"] >= 3
    assert remote.json("job", "status", first, code=1)["error"]["code"] == "MN_NOT_FOUND"
    active = remote.data("job", "submit", str(bundle))["job_id"]
    everything = remote.data("job", "clear", "--all", "--yes")
    assert active in everything["cancelled_jobs"] and everything["deleted_count"] >= 1
    assert remote.data("job", "list") == []


def test_node_and_resource(remote: Mn) -> None:
    nodes = remote.data("node", "list")
    assert nodes[0]["name"] == "mn@grpc-test" and "default" in nodes[0]["executor_pools"]
    report = remote.data("resource", "get")
    assert report["limits"] == {"cpu": 100, "gpu": 100, "memory": 100, "disk": 100}
    assert remote.data("resource", "list")["limits"] == report["limits"]
    assert remote.data("resource", "set", "--memory", "50")["limits"]["memory"] == 50
    assert remote.data("resource", "set", "--memory", "100")["limits"]["memory"] == 100
    assert remote.json("resource", "set", code=2)["error"]["code"] == "MN_USAGE_ERROR"
    assert "successful" in remote("resource", "set", "--cpu", "100").stdout


def test_bundle_registry_over_rest(remote: Mn, server: GrpcServer) -> None:
    rest = {"MN_API_BASE_URL": server.base_url}
    assert "registered" in [b["bundle_id"] for b in remote.data("bundle", "list", **rest)]
    reloaded = remote.data("bundle", "reload", "registered", **rest)
    assert reloaded == {"bundle_id": "registered", "changed": False, "reloaded": False, **reloaded}
    missing = remote.json("bundle", "reload", "ghost", code=1, **rest)
    assert missing["error"] == {**missing["error"], "code": "MN_NOT_FOUND", "message": "Bundle ghost not found"}
    assert remote.json("bundle", "reload", "registered", code=2)["error"]["code"] == "MN_USAGE_ERROR"


def test_errors_and_exit_codes(remote: Mn, tmp_path: Path) -> None:
    assert remote.json("job", "inspect", "nope", code=1)["error"] == {
        "code": "MN_NOT_FOUND",
        "message": "job nope was not found",
        "hint": None,
        "details": None,
    }
    unknown = remote("jbo", "list")
    assert unknown.returncode == 2 and "Did you mean 'job'?" in unknown.stderr
    bad = write_bundle(tmp_path / "bad", {"graph_id": "g", "nodes": []})
    invalid = remote.json("run", str(bad), code=1)
    assert invalid["error"]["code"] == "MN_VALIDATION_FAILED" and len(invalid["error"]["details"]) >= 2
    assert remote("run", str(bad), "--detach", "--follow").returncode == 2


def test_auth_refusal_is_permission_denied(tmp_path: Path) -> None:
    server = GrpcServer(tmp_path, MN_GRPC_AUTH_TOKEN=AUTH_TOKEN, MN_GRPC_ADMIN_TOKEN=ADMIN_TOKEN).start()
    try:
        anonymous = Mn(server.client_env(), tmp_path)
        refused = anonymous.json("job", "list", code=1)["error"]
        assert refused["code"] == "MN_PERMISSION_DENIED"
        assert refused["message"] == "gRPC auth token is required for this RPC"
        user = Mn(server.client_env(MN_GRPC_AUTH_TOKEN=AUTH_TOKEN), tmp_path)
        assert user.data("job", "list") == []
        assert user.json("job", "cleanup", "-y", code=1)["error"]["code"] == "MN_PERMISSION_DENIED"
        admin = Mn(server.client_env(MN_GRPC_AUTH_TOKEN=AUTH_TOKEN, MN_GRPC_ADMIN_TOKEN=ADMIN_TOKEN), tmp_path)
        assert admin.data("job", "cleanup", "-y")["deleted_count"] == 0
    finally:
        server.stop()
