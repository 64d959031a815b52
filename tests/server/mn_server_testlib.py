"""Helpers for the server tests: manifests, zip bundles, a real ``mn server`` subprocess, notify sockets."""

from __future__ import annotations

import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from job_manifests import command_job as command_job  # re-exported for the tests
from job_manifests import quick_job  # re-exported for the tests
from job_manifests import waiting_job as waiting_job

from mncore.config import Settings
from mncore.runtime import Runtime

with warnings.catch_warnings():  # newer Starlette prefers httpx2 and warns when it finds httpx
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

ROOT = Path(__file__).resolve().parents[2]
API = "/api/v1"


ClientFactory = Callable[..., TestClient]


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": str(tmp_path / "data"),
        "home": str(tmp_path / "home"),
        "temp_dir": str(tmp_path / "work"),
        "node_name": "mn@test",
        "default_runner": "host",
        "execution_mode": "inline",
        "job_health_check_interval_ms": 100,
        "agent_heartbeat_interval_ms": 200,
        "api_sse_heartbeat_seconds": 0.3,
    }
    values.update(overrides)
    return Settings.from_env({}, **values)


def runtime_of(client: TestClient) -> Runtime:
    runtime: Runtime = client.app.state.runtime  # type: ignore[attr-defined]
    return runtime


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def bundle_zip(
    manifest: dict[str, Any] | None = None,
    *,
    top: str | None = None,
    extra: dict[str, bytes | str] | None = None,
    payloads: bool = True,
) -> bytes:
    """A bundle as zip bytes (inside folder ``top`` when given)."""
    import json

    prefix = f"{top}/" if top else ""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr(prefix + "manifest.json", json.dumps(manifest or quick_job("uploaded")))
        if payloads:
            archive.writestr(prefix + "payloads/hello.txt", "hi")
        for name, data in (extra or {}).items():
            archive.writestr(name, data)
    return buf.getvalue()


# -- a real server -------------------------------------------------------------------------------


def mn_command() -> list[str]:
    """``mn`` from the venv when installed, else the same CLI entry through the interpreter."""
    script = Path(sys.executable).with_name("mn")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from mncore.cli import main; sys.exit(main())"]


def server_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MN_", "MIRROR_NEURON_", "NOTIFY_", "WATCHDOG_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(
        MN_DATA_DIR=str(data_dir / "data"),
        MN_HOME=str(data_dir / "home"),
        MN_TEMP_DIR=str(data_dir / "work"),
        MN_NODE_NAME="mn@e2e",
        MN_EXECUTION_MODE="inline",
        MN_DEFAULT_RUNNER="host",
        MN_JOB_HEALTH_CHECK_INTERVAL_MS="200",
        MN_AGENT_HEARTBEAT_INTERVAL_MS="500",
        MN_LOG_LEVEL="INFO",
        MN_GRPC_ENABLED="false",  # these tests drive REST; the gRPC listener has its own suite
    )
    env.update(extra)
    return env


class ServerProcess:
    """``mn server`` on a free port; ``start()`` waits for ``/health``; ``stop()`` sends SIGTERM."""

    def __init__(self, workdir: Path, **env: str) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.env = server_env(workdir, **env)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / f"server-{self.port}.log"
        self.base_url = f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0, wait: bool = True) -> ServerProcess:
        with open(self.log_path, "ab") as log:
            cmd = [*mn_command(), "server", "--port", str(self.port)]
            self.proc = subprocess.Popen(cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir)
        if wait:
            self.wait_healthy(timeout)
        return self

    def wait_healthy(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"mn server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(self.base_url + API + "/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"mn server did not become healthy:\n{self.log()}")
            time.sleep(0.05)

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.base_url + API, timeout=20, **kwargs)

    def signal(self, sig: int = signal.SIGTERM) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.signal(signal.SIGTERM)
        try:
            return self.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def systemd_analyze() -> str | None:
    return shutil.which("systemd-analyze")
