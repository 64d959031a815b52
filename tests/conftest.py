"""Shared test fixtures. Each part owns a clearly delimited section; add yours as a new section."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

# =================================================================================================
# store: a real redis-server (owner: mncore/store)
#
#   redis_server          session-scoped RedisServer on a free loopback port (shared by tests)
#   redis_url             its URL
#   redis_namespace       a fresh key namespace per test (tests share the server, never keys)
#   redis_server_factory  start private servers (for fault tests: stop / kill / restart them)
#
# Without redis-server on PATH the Redis tests are skipped, unless MN_REQUIRE_REDIS=1 (CI), where
# they fail. scripts/ensure-system-deps.sh installs it.
# =================================================================================================

REDIS_SERVER_BIN = shutil.which("redis-server")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def require_redis_server() -> str:
    """The redis-server binary; skips the test without it (fails when MN_REQUIRE_REDIS=1)."""
    if REDIS_SERVER_BIN is None:
        if os.environ.get("MN_REQUIRE_REDIS") == "1":
            pytest.fail(
                "MN_REQUIRE_REDIS=1 but redis-server is not on PATH; run scripts/ensure-system-deps.sh", pytrace=False
            )
        pytest.skip("redis-server is not on PATH (scripts/ensure-system-deps.sh installs it)")
    return REDIS_SERVER_BIN


class RedisServer:
    """One real redis-server on 127.0.0.1, no persistence configured, restartable on the same port.

    ``stop(save=True)`` shuts down with ``SHUTDOWN SAVE`` (the data comes back on ``start()``: a
    clean restart); ``kill()`` is SIGKILL (the data is lost: a crash of an unpersisted server).
    """

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.binary = require_redis_server()
        self.workdir = workdir
        self.port = port or _free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        """A plain synchronous client, for inspecting keys from a test (close it after use)."""
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5, retry=Retry(NoBackoff(), 0))

    def start(self, timeout: float = 10.0) -> None:
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        args += ["--dir", str(self.workdir), "--loglevel", "warning"]
        with open(self.workdir / "redis.log", "ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}; see {self.workdir / 'redis.log'}")
            try:
                with self.client() as client:
                    client.ping()
                return
            except redis.exceptions.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def stop(self, save: bool = True) -> None:
        if self.proc is None:
            return
        try:
            with self.client() as client:
                client.shutdown(save=save, nosave=not save)
        except redis.exceptions.ConnectionError:
            pass  # the server closes the connection as it exits
        self._wait()

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self._wait()

    def restart(self, save: bool = True) -> None:
        self.stop(save=save)
        self.start()

    def _wait(self) -> None:
        assert self.proc is not None
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.kill()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


@pytest.fixture
def redis_namespace() -> str:
    return f"mntest_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def redis_server_factory(tmp_path: Path) -> Iterator[Callable[[], RedisServer]]:
    servers: list[RedisServer] = []

    def start() -> RedisServer:
        workdir = tmp_path / f"redis-{len(servers)}"
        workdir.mkdir()
        server = RedisServer(workdir)
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.kill()


# ======================================== end of store section ====================================
