"""The gRPC listener inside ``mn server``: same loop and shutdown as REST, start failures, opt-out."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import httpx
import pytest
from mn_grpc_testlib import GrpcServer, command_job, mn_command, until

from mncore.errors import UnavailableError
from mncore.sdk import Client

pytestmark = pytest.mark.slow


def test_sigterm_refuses_submissions_while_draining_then_exits_0(tmp_path: Path) -> None:
    server = GrpcServer(tmp_path, MN_SHUTDOWN_GRACE_SECONDS="3").start()
    with Client(server.target, timeout=10, auth_token="", admin_token="") as mn:
        job_id = mn.submit_job(command_job(["sleep", "30"], graph_id="drain"))
        until(lambda: mn.get_job(job_id)["job"]["status"] == "running", what="running")
        server.signal()
        with pytest.raises(UnavailableError, match="node is shutting down"):
            until(lambda: mn.submit_job(command_job(["true"])) and False, timeout=3, what="refusal")
        assert mn.get_job(job_id)["job"]["job_id"] == job_id  # reads still answer during the drain
    assert server.proc is not None
    assert server.proc.wait(30) == 0
    assert "gRPC API listening on grpc://127.0.0.1:" in server.log()


def test_grpc_port_in_use_fails_the_start(tmp_path: Path) -> None:
    server = GrpcServer(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", server.grpc_port))
        taken.listen()
        cmd = [*mn_command(), "server", "--port", str(server.port), "--grpc-port", str(server.grpc_port)]
        result = subprocess.run(cmd, env=server.env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 69, result.stderr
    assert f"gRPC: cannot bind 127.0.0.1:{server.grpc_port}" in result.stderr


def test_grpc_can_be_disabled(tmp_path: Path) -> None:
    server = GrpcServer(tmp_path, MN_GRPC_ENABLED="false")
    cmd = [*mn_command(), "server", "--port", str(server.port), "--grpc-port", str(server.grpc_port)]
    with open(server.log_path, "wb") as log:
        server.proc = subprocess.Popen(cmd, env=server.env, stdout=log, stderr=subprocess.STDOUT)
    try:

        def healthy() -> bool:
            try:
                return httpx.get(f"{server.base_url}/api/v1/health", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        until(healthy, timeout=30, what="REST health")
        with Client(server.target, timeout=1, auth_token="", admin_token="") as mn, pytest.raises(UnavailableError):
            mn.health()
        assert "grpc://" not in server.log()
    finally:
        assert server.stop() == 0
