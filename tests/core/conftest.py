"""Fixtures for engine tests: a Runtime on a real SQLite store in a temp data dir, fast timers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mncore.config import Settings
from mncore.runtime import Runtime


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings.from_env(
        {},
        data_dir=str(tmp_path / "data"),
        home=str(tmp_path / "home"),
        temp_dir=str(tmp_path / "work"),
        node_name="mn@test",
        default_runner="host",
        execution_mode="inline",
        job_health_check_interval_ms=100,
        agent_heartbeat_interval_ms=200,
    )


@pytest.fixture
async def runtime(settings: Settings) -> AsyncIterator[Runtime]:
    async with Runtime(settings) as rt:
        yield rt
