"""The docker runner against a real daemon, with a tiny image built locally (no registry).

The image holds the host's bash/coreutils binaries and the libraries they link, imported from
a tarball. Without a reachable daemon every test here is skipped with the reason.
"""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import tarfile
import time
from collections.abc import Iterator
from typing import Any

import pytest
from execution_helpers import Recorder, make_request, run_with, workspaces

from mncore.config import Settings
from mncore.execution import get_runner, is_transient
from mncore.execution.runners.docker import DockerRunner, container_limits

pytestmark = pytest.mark.docker
IMAGE = "mn-test-runner:1"
BINARIES = ("bash", "sh", "cat", "env", "sleep", "ls", "echo", "true", "pwd", "id", "touch", "mkdir")


def _closure(paths: list[str]) -> set[str]:
    needed = set(paths)
    for path in paths:
        out = subprocess.run(["ldd", path], capture_output=True, text=True, check=False).stdout
        needed.update(tok for tok in out.split() if tok.startswith("/"))
    return needed


def _rootfs_tar() -> bytes:
    binaries = [p for p in (f"/usr/bin/{b}" for b in BINARIES) if os.path.exists(p)]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for directory in ("tmp", "sandbox", "bin"):
            info = tarfile.TarInfo(directory)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if directory == "tmp" else 0o755
            tar.addfile(info)
        for path in sorted(_closure(binaries)):
            with open(os.path.realpath(path), "rb") as fh:
                data = fh.read()
            info = tarfile.TarInfo(path.lstrip("/"))
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
        for name in BINARIES:  # /bin/<name> as well, for scripts that say /bin/sh
            info = tarfile.TarInfo(f"bin/{name}")
            info.type, info.linkname = tarfile.SYMTYPE, f"/usr/bin/{name}"
            tar.addfile(info)
    return buf.getvalue()


@pytest.fixture(scope="session")
def docker_client() -> Iterator[Any]:
    ok, reason = DockerRunner.available(Settings(data_dir="/nonexistent", home="/nonexistent"))
    if not ok:
        pytest.skip(f"{reason} (scripts/ensure-system-deps.sh installs and starts one)")
    import docker

    client = docker.from_env(timeout=120)
    try:
        client.images.get(IMAGE)
    except docker.errors.ImageNotFound:
        repo, tag = IMAGE.split(":")
        client.api.import_image_from_data(_rootfs_tar(), repository=repo, tag=tag)
    yield client
    client.close()


@pytest.fixture
def docker_settings(settings: Settings, docker_client: Any) -> Settings:
    return settings


def _containers(client: Any, job_id: str) -> list[Any]:
    return client.containers.list(all=True, filters={"label": f"mirror_neuron.job_id={job_id}"})


async def test_runs_in_a_container_and_removes_it(docker_settings: Settings, docker_client: Any) -> None:
    cmd = "pwd; cat {input_file}; echo; echo $MIRROR_NEURON_JOB_ID $MN_EXECUTION_NODE $HOME; echo oops >&2; exit 4"
    config = {"image": IMAGE, "command": cmd, "workdir": "/sandbox/job/w"}
    outcome, _ = await run_with(docker_settings, "docker", config, {"x": 1}, job_id="job-docker-1")
    result = outcome.result
    assert result["stdout"].split("\n") == ["/sandbox/job/w", "{", '  "x": 1', "}", "job-docker-1 node-test /tmp"]
    assert result["stderr"] == "oops"
    assert result["exit_code"] == result["runner_exit_code"] == 4
    assert result["error"] == "command exited with status 4"
    assert result["runner"] == "docker" and result["remote_dir"] == "/sandbox/job"
    assert result["sandbox_name"].startswith("mirror-neuron-job-docker-1-worker-")
    assert _containers(docker_client, "job-docker-1") == []
    assert workspaces(docker_settings.temp_dir) == []


async def test_list_command_structured_output_and_beacons(docker_settings: Settings) -> None:
    cmd = ["bash", "-c", 'echo "${MN_AGENT_BEACON_STDOUT_PREFIX}{\\"status\\":\\"up\\"}"; echo \'{"next_state": 1}\'']
    outcome, events = await run_with(docker_settings, "docker", {"docker_worker_image": IMAGE, "command": cmd,
                                                                 "beacon_enabled": True})  # fmt: skip
    assert outcome.ok and outcome.structured == {"next_state": 1}
    assert {"status": "up"} in events.of("agent_beacon")
    assert [p["status"] for p in events.of("agent_beacon") if p.get("source") == "runtime"] == ["started", "completed"]


async def test_image_is_required(docker_settings: Settings) -> None:
    outcome, _ = await run_with(docker_settings, "docker", {"command": ["true"]})
    assert outcome.result["error"] == "docker runner requires config.image"


async def test_missing_image_is_an_attempt_error(docker_settings: Settings) -> None:
    outcome, _ = await run_with(docker_settings, "docker", {"image": "mn-no-such-image:0", "command": ["true"]})
    assert outcome.result["error"].startswith("docker image mn-no-such-image:0 is not available")


async def test_no_network_unless_allowed(docker_settings: Settings) -> None:
    outcome, _ = await run_with(docker_settings, "docker", {"image": IMAGE, "command": ["ls", "/sys/class/net"]})
    assert outcome.result["stdout"] == "lo"


async def test_limits_from_node_resources(docker_settings: Settings) -> None:
    assert container_limits({"cpu_cores": 4, "memory_gb": 2}, {"cpu_cores": 1.5, "memory_mb": 256}) == {
        "nano_cpus": 1_500_000_000,
        "mem_limit": "256m",
    }
    assert container_limits({"cpu_cores": 1}, {"cpu_cores": 8}) == {"nano_cpus": 1_000_000_000}
    assert container_limits({}, {}) == {}
    cmd = "cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes"
    outcome, _ = await run_with(
        docker_settings, "docker", {"image": IMAGE, "command": cmd},
        limits={"cpu_cores": 2, "memory_gb": 1}, resources={"memory_mb": 256},
    )  # fmt: skip
    assert outcome.result["stdout"] == str(256 * 1024 * 1024)


async def test_timeout_stops_the_container(docker_settings: Settings, docker_client: Any) -> None:
    started = time.monotonic()
    outcome, _ = await run_with(docker_settings, "docker", {"image": IMAGE, "command": ["sleep", "300"],
                                                            "timeout_seconds": 1}, job_id="job-docker-t")  # fmt: skip
    assert time.monotonic() - started < 15
    assert outcome.result["error"] == "docker command timed out" and is_transient(outcome.result)
    assert _containers(docker_client, "job-docker-t") == []


async def test_cancel_stops_and_removes_the_container(docker_settings: Settings, docker_client: Any) -> None:
    request = make_request({"image": IMAGE, "command": ["sleep", "300"]}, job_id="job-docker-c")
    task = asyncio.create_task(get_runner("docker", docker_settings).run(request, Recorder()))
    deadline = time.monotonic() + 20
    while not _containers(docker_client, "job-docker-c") and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert _containers(docker_client, "job-docker-c") == []


async def test_resource_usage(docker_settings: Settings) -> None:
    cmd = ["bash", "-c", "i=0; while [ $i -lt 500000 ]; do i=$((i+1)); done; echo ok"]
    outcome, _ = await run_with(docker_settings, "docker", {"image": IMAGE, "command": cmd})
    usage = outcome.result["resource_usage"]
    assert outcome.ok and usage["wall_ms"] >= 200, usage
    assert usage["cpu_user_ms"] + usage["cpu_system_ms"] >= 100 and usage["peak_rss_bytes"] > 0, usage


async def test_shared_container_per_job_removed_on_cleanup(docker_settings: Settings, docker_client: Any) -> None:
    runner = get_runner("docker", docker_settings)
    config = {"image": IMAGE, "reuse_shared_container": True, "command": "echo $$ > pid; cat {input_file}; echo; pwd"}
    outputs = []
    for attempt in (1, 2):
        request = make_request(config, {"a": attempt}, job_id="job-docker-s", attempt=attempt)
        outcome = await runner.run(request, Recorder())
        assert outcome.ok, outcome.result
        outputs.append(outcome.result)
    assert len(_containers(docker_client, "job-docker-s")) == 1
    assert outputs[0]["remote_dir"] != outputs[1]["remote_dir"]
    assert outputs[1]["stdout"].split("\n")[-1] == outputs[1]["remote_dir"]
    assert '"a": 2' in outputs[1]["stdout"]
    await runner.cleanup_job("job-docker-s")
    assert _containers(docker_client, "job-docker-s") == []
    assert not any("shared" in name for name in os.listdir(docker_settings.temp_dir))


async def test_sdk_errors_fail_the_attempt_not_the_runtime(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    import docker.errors

    def unreachable(self: DockerRunner) -> Any:
        raise docker.errors.DockerException("Error while fetching server API version")

    # (pointing DOCKER_HOST at nothing would do, but docker-py then leaks the failed socket)
    monkeypatch.setattr(DockerRunner, "client", unreachable)
    outcome, _ = await run_with(settings, "docker", {"image": IMAGE, "command": ["true"]})
    assert outcome.result["error"] == "docker runner failed: Error while fetching server API version"
    assert workspaces(settings.temp_dir) == []
