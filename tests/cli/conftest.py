"""Fixtures for the CLI tests: ``mn`` run as a real subprocess, against a real server or embedded."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from mn_cli_testlib import Mn, write_bundle
from mn_grpc_testlib import GrpcServer, clean_env, quick_job


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GrpcServer]:
    """A real ``mn server`` with one registered bundle (``registered``)."""
    workdir = tmp_path_factory.mktemp("cli-server")
    write_bundle(workdir / "registry" / "reg", quick_job("registered"))
    running = GrpcServer(workdir, MN_BUNDLES_DIR=str(workdir / "registry")).start()
    yield running
    running.stop()


@pytest.fixture
def remote(server: GrpcServer, tmp_path: Path) -> Mn:
    """``mn`` pointed at the server (MN_GRPC_TARGET)."""
    return Mn(server.client_env(), tmp_path)


@pytest.fixture
def embedded(tmp_path: Path) -> Mn:
    """``mn`` with no server answering at MN_GRPC_TARGET: local store under ``tmp_path``."""
    return Mn(clean_env(tmp_path), tmp_path)
