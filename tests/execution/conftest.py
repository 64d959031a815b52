"""Fixtures for the runner layer: settings under tmp dirs, request builders, sandbox probes.

``data_dir`` and ``home`` live under ``/var/tmp`` (not ``/tmp``): bwrap gives payloads a private
``/tmp``, which would hide them anyway and make the "cannot read the store" tests vacuous.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from mncore.config import Settings
from mncore.execution.runners import close_runners
from mncore.execution.runners.bwrap import probe_bwrap


@pytest.fixture
def store_dirs() -> Iterator[Path]:
    root = Path("/var/tmp") / f"mn-exec-test-{uuid.uuid4().hex[:12]}"
    (root / "data").mkdir(parents=True)
    (root / "home").mkdir(parents=True)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def settings(tmp_path: Path, store_dirs: Path) -> Settings:
    return Settings(
        temp_dir=str(tmp_path / "temp"),
        data_dir=str(store_dirs / "data"),
        home=str(store_dirs / "home"),
        node_name="node-test",
        default_runner="auto",
    )


@pytest.fixture
def bwrap_settings(settings: Settings) -> Settings:
    ok, reason = probe_bwrap(settings)
    if not ok:
        pytest.skip(f"bubblewrap does not work here ({reason}); scripts/ensure-system-deps.sh installs it")
    return settings


@pytest.fixture(autouse=True)
async def _close_runners(settings: Settings) -> AsyncIterator[None]:
    """Runner instances are cached per Settings; close this test's (docker clients, threads)."""
    yield
    await close_runners(settings)
