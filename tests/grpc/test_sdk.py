"""The Python SDK (sync and async) against a real server: every method, decoded results, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mn_grpc_testlib import GrpcServer, quick_job, until, waiting_job

from mncore.errors import NotFoundError, StateError, ValidationError
from mncore.sdk import AsyncClient, Client

pytestmark = pytest.mark.slow


def write_bundle(root: Path, manifest: dict[str, object], files: dict[str, bytes]) -> Path:
    (root / "payloads").mkdir(parents=True)
    (root / "manifest.json").write_text(json.dumps(manifest))
    for name, data in files.items():
        path = root / "payloads" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def test_sync_client_every_method(server: GrpcServer, tmp_path: Path) -> None:
    with Client(server.target, timeout=10, auth_token="", admin_token="") as mn:
        assert mn.health() == "SERVING"
        job_id = mn.submit_job(quick_job("sdk_quick"), {"notes/a.txt": b"a", "b.txt": "text"})
        events = list(mn.stream_events(job_id, follow=True, heartbeat_interval_ms=100))
        assert events[-1]["type"] == "job_completed" and "version" not in events[-1]
        details = mn.get_job(job_id)
        assert details["job"]["status"] == "completed" and "version" not in details
        assert job_id in [j["job_id"] for j in mn.list_jobs()]
        assert job_id not in [j["job_id"] for j in mn.list_jobs(include_terminal=False)]
        assert len(mn.list_jobs(limit=1)) == 1
        bundle = write_bundle(tmp_path / "b", waiting_job("sdk_bundle"), {"deep/x.bin": b"\x00\x01"})
        waiting = mn.submit_bundle(bundle / "manifest.json")
        stored = Path(server.env["MN_DATA_DIR"]) / "bundles" / waiting / "payloads" / "deep" / "x.bin"
        assert stored.read_bytes() == b"\x00\x01"
        until(lambda: mn.get_job(waiting)["job"]["status"] == "running", what="running")
        assert mn.pause_job(waiting) == "paused"
        with pytest.raises(StateError, match="job is not running"):
            mn.pause_job(waiting)
        assert mn.resume_job(waiting) == "running"
        assert mn.send_message(waiting, "r", {"n": 2}) == "delivered"
        until(lambda: mn.get_job(waiting)["job"]["status"] == "completed", what="completion")
        assert [e["type"] for e in mn.stream_events(waiting, limit=1)] == ["job_completed"]
        assert mn.clear_jobs() >= 2
        with pytest.raises(NotFoundError, match=f"job {job_id} was not found"):
            mn.get_job(job_id)
        with pytest.raises(NotFoundError):
            list(mn.stream_events("nope"))
        summary = mn.get_system_summary()
        assert set(summary) == {"nodes", "jobs"}
        assert "version" not in mn.get_resource()
        mn.set_resource({"memory": 75})
        with pytest.raises(ValidationError, match="resource type must be one of cpu, gpu, memory, or disk"):
            mn.set_resource({"disks": 50})
        mn.set_resource({"memory": 100})


async def test_async_client_every_method(server: GrpcServer) -> None:
    async with AsyncClient(server.target, timeout=10, auth_token="", admin_token="") as mn:
        assert await mn.health() == "SERVING"
        job_id = await mn.submit_job(json.dumps(waiting_job("sdk_async")))
        until_running = [e["type"] async for e in mn.stream_events(job_id, limit=0)]
        assert until_running[0] == "job_pending"
        seen = []
        async for event in mn.stream_events(job_id, follow=True, heartbeat_interval_ms=100):
            seen.append(event["type"])
            if event["type"] == "stream_heartbeat" and seen.count("stream_heartbeat") == 1:
                assert await mn.pause_job(job_id) == "paused"
                assert await mn.resume_job(job_id) == "running"
                assert await mn.send_message(job_id, "r", '{"n": 2}') == "delivered"
        assert seen[-1] == "job_completed"
        assert (await mn.get_job(job_id))["job"]["status"] == "completed"
        assert job_id in [j["job_id"] for j in await mn.list_jobs(limit=0)]
        other = await mn.submit_bundle(_bundle_dir(server))
        assert await mn.cancel_job(other) == "cancelled"
        assert await mn.clear_jobs() >= 2
        assert set(await mn.get_system_summary()) == {"nodes", "jobs"}
        assert isinstance(await mn.get_resource(), dict)
        assert isinstance(await mn.set_resource({"disk": 100}), dict)
        with pytest.raises(NotFoundError):
            await mn.get_job(job_id)


def _bundle_dir(server: GrpcServer) -> Path:
    root = server.workdir / "async-bundle"
    if not root.exists():
        write_bundle(root, waiting_job("sdk_async_bundle"), {"a.txt": b"a"})
    return root


def test_defaults_come_from_the_environment(server: GrpcServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MN_GRPC_TARGET", server.target)
    monkeypatch.setenv("MN_GRPC_TIMEOUT_SECONDS", "0")
    monkeypatch.setenv("MN_GRPC_AUTH_TOKEN", "ignored-by-this-server")
    with Client() as mn:
        assert mn.target == server.target
        assert mn.config.timeout is None
        assert mn.config.auth_token == "ignored-by-this-server"
        assert mn.health() == "SERVING"
    monkeypatch.delenv("MN_GRPC_TARGET")
    with Client() as default:
        assert default.target == "localhost:50051"


def test_submit_bundle_needs_a_manifest(tmp_path: Path) -> None:
    with (
        Client("127.0.0.1:1", timeout=1, auth_token="", admin_token="") as mn,
        pytest.raises(ValidationError, match="manifest.json is missing"),
    ):
        mn.submit_bundle(tmp_path)


def test_mn_sdk_shim_reexports_the_client() -> None:
    import mn_sdk

    assert mn_sdk.Client is Client and mn_sdk.AsyncClient is AsyncClient
