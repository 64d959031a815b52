"""Fixtures for the REST/daemon tests: in-process TestClient over a real Runtime, real servers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from mn_server_testlib import ClientFactory, ServerProcess, TestClient, make_settings

from mncore.runtime import Runtime
from server.rest import create_app


@pytest.fixture
def client_factory(tmp_path: Path) -> Iterator[ClientFactory]:
    """``make(**settings_overrides)`` → a started TestClient whose app owns its Runtime."""
    stack: list[TestClient] = []

    def make(**overrides: Any) -> TestClient:
        settings = make_settings(tmp_path, **overrides)
        client = TestClient(create_app(Runtime(settings), settings, manage_runtime=True), base_url="http://mn.test")
        client.__enter__()
        stack.append(client)
        return client

    yield make
    for client in reversed(stack):
        client.__exit__(None, None, None)


@pytest.fixture
def client(client_factory: ClientFactory) -> TestClient:
    return client_factory()


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Start real ``mn server`` processes (killed at the end if still running)."""
    servers: list[ServerProcess] = []

    def make(workdir: Path | None = None, start: bool = True, **env: str) -> ServerProcess:
        server = ServerProcess(workdir or tmp_path, **env)
        servers.append(server)
        return server.start() if start else server

    yield make
    for server in servers:  # a graceful stop kills payloads too; SIGKILL would orphan them
        if server.proc is not None and server.proc.poll() is None:
            server.stop(timeout=15)
