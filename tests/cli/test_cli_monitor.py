"""The terminal monitors in a pseudo-terminal (pexpect): they render, follow a job as it
progresses, act on keys (open, back, cancel), and quit cleanly on ``q``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest
from mn_grpc_testlib import GrpcServer, mn_command, until, waiting_job

from mncore.sdk import Client

pytestmark = pytest.mark.slow

QUIT_WITHIN_S = 5.0


@pytest.fixture
def sdk(server: GrpcServer) -> Iterator[Client]:
    with Client(server.target, auth_token="", admin_token="") as client:
        yield client


def running_job(sdk: Client, graph_id: str) -> str:
    job_id = sdk.submit_job(waiting_job(graph_id))
    until(lambda: sdk.get_job(job_id)["job"]["status"] == "running", what="running")
    return job_id


def spawn(server: GrpcServer, tmp_path: Path, *args: str, **env: str) -> pexpect.spawn:
    command = mn_command()
    return pexpect.spawn(
        command[0],
        [*command[1:], *args],
        env=server.client_env(TERM="xterm-256color", **env),
        cwd=str(tmp_path),
        dimensions=(45, 180),
        encoding="utf-8",
        codec_errors="replace",  # Ctrl+C makes the tty discard queued output, possibly mid-character
        timeout=15,
    )


def quit_cleanly(child: pexpect.spawn) -> None:
    started = time.monotonic()
    child.send("q")
    child.expect(pexpect.EOF, timeout=QUIT_WITHIN_S)
    child.close()
    assert time.monotonic() - started < QUIT_WITHIN_S
    assert child.exitstatus == 0, child.before


def test_cluster_dashboard(server: GrpcServer, sdk: Client, tmp_path: Path) -> None:
    first = running_job(sdk, "mon_a")
    child = spawn(server, tmp_path, "monitor")
    try:
        child.expect("MirrorNeuron")
        child.expect("Nodes")
        child.expect(first)
        child.expect("job_running")  # the recent-events panel follows the active job's stream
        sdk.send_message(first, "r", {"n": 2})
        child.expect("job_completed")  # updates as the job progresses
        child.expect("completed")
        child.send("\r")  # open the selected job
        child.expect("Agents")
        child.expect("aggregator")
        child.send("\x1b")  # back to the cluster view
        child.expect("Recent events")
        second = running_job(sdk, "mon_b")
        child.expect(second)
        child.send("k")  # the newest job is on top
        child.send("c")
        child.expect(f"Cancel job {second}\\? \\(y/n\\)")
        child.send("y")
        child.expect("Job cancel successful")
        until(lambda: sdk.get_job(second)["job"]["status"] == "cancelled", what="cancellation")
        quit_cleanly(child)
    finally:
        child.close(force=True)


def test_job_monitor(server: GrpcServer, sdk: Client, tmp_path: Path) -> None:
    job_id = running_job(sdk, "mon_job")
    child = spawn(server, tmp_path, "job", "monitor", job_id)
    try:
        child.expect(f"job {job_id}")
        child.expect("Agents")
        child.expect("Mailbox")
        child.expect("Processed")
        child.expect("running")
        sdk.send_message(job_id, "r", {"n": 2})
        child.expect("job_completed")
        child.expect("completed")
        quit_cleanly(child)
    finally:
        child.close(force=True)


def test_job_monitor_over_rest_sse_and_pause_key(server: GrpcServer, sdk: Client, tmp_path: Path) -> None:
    job_id = running_job(sdk, "mon_sse")
    child = spawn(server, tmp_path, "monitor", job_id, MN_API_BASE_URL=server.base_url)
    try:
        child.expect("job_running")
        child.send("p")
        child.expect("Job pause successful")
        until(lambda: sdk.get_job(job_id)["job"]["status"] == "paused", what="paused")
        child.expect("job_paused")  # arrived through the SSE stream
        child.send("p")
        child.expect("Job resume successful")
        sdk.send_message(job_id, "r", {"n": 2})
        child.expect("job_completed")
        quit_cleanly(child)
    finally:
        child.close(force=True)


def test_ctrl_c_exits_130(server: GrpcServer, tmp_path: Path) -> None:
    child = spawn(server, tmp_path, "monitor")
    try:
        child.expect("Nodes")
        child.sendintr()
        child.expect(pexpect.EOF, timeout=QUIT_WITHIN_S)
        child.close()
        assert child.exitstatus == 130
    finally:
        child.close(force=True)


def test_unknown_job_fails_before_the_screen_opens(server: GrpcServer, tmp_path: Path) -> None:
    child = spawn(server, tmp_path, "job", "monitor", "nope")
    child.expect("job nope was not found")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 1


def test_cancel_without_an_id_picks_interactively(server: GrpcServer, sdk: Client, tmp_path: Path) -> None:
    job_id = running_job(sdk, "mon_pick")
    child = spawn(server, tmp_path, "job", "cancel")
    try:
        child.expect(f"1\\. {job_id}")
        child.expect("Cancel which job\\?")
        child.sendline("1")
        child.expect("Job cancel successful")
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 0
        assert sdk.get_job(job_id)["job"]["status"] == "cancelled"
    finally:
        child.close(force=True)
