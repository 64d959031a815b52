"""Where executor attempts run: the execution service, and its in-process backend.

The executor agent asks :class:`ExecutionService` for a lease and then for attempts. An
:class:`ExecutionBackend` runs one attempt: :class:`InlineBackend` in the calling process (used
by tests and ``MN_EXECUTION_MODE=inline``); the multiprocess backend (``mncore.execution.pools``)
sends it to a pool worker through shared memory.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Callable
from typing import Any

from ..config import Settings
from .leases import LeaseManager
from .request import AttemptOutcome, RunRequest
from .runners import get_runner, resolve_runner
from .runners.base import Runner

logger = logging.getLogger(__name__)

__all__ = ["ExecutionBackend", "ExecutionService", "InlineBackend"]

Emit = Callable[[str, dict[str, Any]], None]


class ExecutionBackend(abc.ABC):
    """Runs one executor attempt somewhere and returns its outcome."""

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Allocate resources (processes, shared memory)."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release everything; running attempts are cancelled."""

    @abc.abstractmethod
    async def run(self, request: RunRequest, emit: Emit) -> AttemptOutcome: ...

    @abc.abstractmethod
    async def cleanup_job(self, job_id: str) -> None: ...

    def stats(self) -> dict[str, Any]:
        return {}


class InlineBackend(ExecutionBackend):
    """Runs attempts in this process's event loop (subprocess runners stay asynchronous)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._runners: dict[str, Runner] = {}

    def _runner(self, name: str) -> Runner:
        runner = self._runners.get(name)
        if runner is None:
            runner = self._runners[name] = get_runner(name, self._settings)
        return runner

    async def run(self, request: RunRequest, emit: Emit) -> AttemptOutcome:
        return await self._runner(request.runner).run(request, emit)

    async def cleanup_job(self, job_id: str) -> None:
        for runner in self._runners.values():
            try:
                await runner.cleanup_job(job_id)
            except Exception:  # cleanup must never fail a job's finalisation
                logger.exception("cleanup of job %s in runner %s failed", job_id, runner.name)


class ExecutionService:
    """Pools + leases + the backend, shared by every executor agent of a node."""

    def __init__(self, settings: Settings, backend: ExecutionBackend | None = None) -> None:
        self.settings = settings
        self.leases = LeaseManager(settings.pool_capacities)
        if backend is None:
            if settings.execution_mode == "process":
                from .pools import ProcessBackend  # imports the worker side only where it is used

                backend = ProcessBackend(settings, settings.pool_capacities)
            else:
                backend = InlineBackend(settings)
        self.backend: ExecutionBackend = backend
        #: docker limits from the node's usable resources (``cpu_cores``, ``memory_gb``)
        self.limits: dict[str, Any] = {}

    async def start(self) -> None:
        await self.backend.start()

    async def close(self) -> None:
        await self.backend.close()
        self.leases.close()

    def resolve_runner(self, config: dict[str, Any]) -> tuple[str, dict[str, Any] | None]:
        return resolve_runner(config, self.settings)

    async def run_attempt(self, request: RunRequest, emit: Emit) -> AttemptOutcome:
        return await self.backend.run(request, emit)

    async def cleanup_job(self, job_id: str) -> None:
        await self.backend.cleanup_job(job_id)

    def pool_stats(self) -> dict[str, dict[str, int]]:
        return self.leases.stats()
