"""Fixtures for the gRPC tests: real ``mn server`` processes (plain, and with auth tokens)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from mn_grpc_testlib import ADMIN_TOKEN, AUTH_TOKEN, GrpcServer


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GrpcServer]:
    """One plain server per test module (tests use their own jobs)."""
    running = GrpcServer(tmp_path_factory.mktemp("grpc")).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GrpcServer]:
    """A server requiring ``AUTH_TOKEN`` on every RPC and ``ADMIN_TOKEN`` for ClearJobs."""
    running = GrpcServer(
        tmp_path_factory.mktemp("grpc-auth"), MN_GRPC_AUTH_TOKEN=AUTH_TOKEN, MN_GRPC_ADMIN_TOKEN=ADMIN_TOKEN
    ).start()
    yield running
    running.stop()
