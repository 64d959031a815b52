"""Helpers for the gRPC, SDK and CLI tests: a real ``mn server`` with REST + gRPC on free ports.

``GrpcServer(tmp).start()`` runs ``mn server --port P --grpc-port G`` with its data in ``tmp``
(``MN_EXECUTION_MODE=inline``, ``MN_DEFAULT_RUNNER=host``) and waits until the gRPC health check
answers SERVING. ``env()`` is an environment for client processes (``mn ...``) pointing at it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from job_manifests import command_job as command_job  # re-exported for the tests
from job_manifests import quick_job as quick_job
from job_manifests import waiting_job as waiting_job

ROOT = Path(__file__).resolve().parents[1]
AUTH_TOKEN = "s3cret-token"
ADMIN_TOKEN = "adm1n-token"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def mn_command() -> list[str]:
    """``mn`` from the venv when installed, else the same CLI entry through the interpreter."""
    script = Path(sys.executable).with_name("mn")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from mncore.cli import main; sys.exit(main())"]


def clean_env(workdir: Path, **extra: str) -> dict[str, str]:
    """The test process's environment without any ``MN_*`` setting, data under ``workdir``."""
    drop = ("MN_", "MIRROR_NEURON_", "NOTIFY_", "WATCHDOG_", "NO_COLOR")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(
        MN_DATA_DIR=str(workdir / "data"),
        MN_HOME=str(workdir / "home"),
        MN_TEMP_DIR=str(workdir / "work"),
        MN_NODE_NAME="mn@grpc-test",
        MN_EXECUTION_MODE="inline",
        MN_DEFAULT_RUNNER="host",
        MN_JOB_HEALTH_CHECK_INTERVAL_MS="200",
        MN_AGENT_HEARTBEAT_INTERVAL_MS="500",
        MN_GRPC_TARGET=f"127.0.0.1:{free_port()}",  # nothing listens there unless a test says so
    )
    env.update(extra)
    return env


class GrpcServer:
    """``mn server`` on free REST and gRPC ports; ``stop()`` sends SIGTERM and returns the exit code."""

    def __init__(self, workdir: Path, **env: str) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.grpc_port = free_port()
        self.target = f"127.0.0.1:{self.grpc_port}"
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.env = clean_env(workdir, **env)
        self.log_path = workdir / f"server-{self.grpc_port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> GrpcServer:
        cmd = [*mn_command(), "server", "--port", str(self.port), "--grpc-port", str(self.grpc_port)]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir)
        self.wait_serving(timeout)
        return self

    def wait_serving(self, timeout: float) -> None:
        from mncore.errors import MNError
        from mncore.sdk import Client

        deadline = time.monotonic() + timeout
        with Client(self.target, timeout=1.0, auth_token="", admin_token="") as client:
            while True:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise RuntimeError(f"mn server exited with {self.proc.returncode}:\n{self.log()}")
                try:
                    if client.health(timeout=1.0) == "SERVING":
                        return
                except MNError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"mn server did not start serving gRPC:\n{self.log()}")
                time.sleep(0.05)

    def client_env(self, **extra: str) -> dict[str, str]:
        """Environment for client processes: same data folder, ``MN_GRPC_TARGET`` at this server, no tokens."""
        env = {k: v for k, v in self.env.items() if k not in ("MN_GRPC_AUTH_TOKEN", "MN_GRPC_ADMIN_TOKEN")}
        return {**env, "MN_GRPC_TARGET": self.target, **extra}

    def signal(self, sig: int = signal.SIGTERM) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def until(predicate: Any, timeout: float = 15.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
