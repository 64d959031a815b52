"""Where CLI commands get their data: a server over gRPC, or the local store (api.md §8 Decision).

:func:`connect` probes ``MN_GRPC_TARGET``: a TCP connect, then the standard health check, each
within :data:`PROBE_TIMEOUT_S`. A server that answers (serving or draining) gets every call
through the SDK (:class:`RemoteBackend`); otherwise the commands work on the local store through
a :class:`~mncore.runtime.Runtime` (:class:`LocalBackend`; executors run inline, nothing is
forked for a read). Both expose the same async methods, returning the same shapes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol, TypeVar

from .. import _loop
from .._util import now_iso
from ..config import Settings
from ..errors import MNError
from ..live import HEARTBEAT, TERMINAL_EVENTS
from ..runtime import Runtime
from ..sdk import AsyncClient
from ._common import settings as load_settings

logger = logging.getLogger(__name__)

__all__ = ["PROBE_TIMEOUT_S", "Backend", "LocalBackend", "RemoteBackend", "connect", "run_with", "target_address"]

PROBE_TIMEOUT_S = 0.5
_POLL_S = 0.2
T = TypeVar("T")


class Backend(Protocol):
    """What the commands call; ``remote`` says which kind answered, ``where`` names it for humans."""

    remote: bool
    where: str

    async def submit_bundle(self, path: str) -> str: ...
    async def job_details(self, job_id: str) -> dict[str, Any]: ...
    async def list_jobs(self, limit: int | None, include_terminal: bool) -> list[dict[str, Any]]: ...
    async def events(self, job_id: str, limit: int | None) -> list[dict[str, Any]]: ...
    def follow(self, job_id: str, heartbeat_s: float = 5.0, limit: int = 0) -> AsyncIterator[dict[str, Any]]: ...
    async def control(self, verb: str, job_id: str) -> str: ...
    async def send_message(self, job_id: str, agent_id: str, message: Any) -> str: ...
    async def cleanup(self, everything: bool) -> dict[str, Any]: ...
    async def summary(self) -> dict[str, Any]: ...
    async def resource(self) -> dict[str, Any]: ...
    async def set_resource(self, limits: dict[str, Any]) -> dict[str, Any]: ...
    async def aclose(self) -> None: ...


class RemoteBackend:
    """A server at ``MN_GRPC_TARGET``, through the async SDK client."""

    remote = True

    def __init__(self, client: AsyncClient) -> None:
        self.client = client
        self.where = client.target

    async def submit_bundle(self, path: str) -> str:
        return await self.client.submit_bundle(path)

    async def job_details(self, job_id: str) -> dict[str, Any]:
        return await self.client.get_job(job_id)

    async def list_jobs(self, limit: int | None, include_terminal: bool) -> list[dict[str, Any]]:
        return await self.client.list_jobs(limit or 0, include_terminal)

    async def events(self, job_id: str, limit: int | None) -> list[dict[str, Any]]:
        return [e async for e in self.client.stream_events(job_id, limit=limit or 0)]

    def follow(self, job_id: str, heartbeat_s: float = 5.0, limit: int = 0) -> AsyncIterator[dict[str, Any]]:
        return self.client.stream_events(job_id, True, int(heartbeat_s * 1000), limit)

    async def control(self, verb: str, job_id: str) -> str:
        method: Callable[[str], Awaitable[str]] = getattr(self.client, f"{verb}_job")
        return await method(job_id)

    async def send_message(self, job_id: str, agent_id: str, message: Any) -> str:
        return await self.client.send_message(job_id, agent_id, message)

    async def cleanup(self, everything: bool) -> dict[str, Any]:
        """ClearJobs; with ``everything`` every active job is cancelled first (api.md §8)."""
        cancelled = []
        if everything:
            for job in await self.client.list_jobs(0, include_terminal=False):
                try:
                    await self.client.cancel_job(job["job_id"])
                    cancelled.append(job["job_id"])
                except MNError as exc:  # finished meanwhile: ClearJobs takes it anyway
                    logger.info("cancel of %s before cleanup: %s", job["job_id"], exc)
        count = await self.client.clear_jobs()
        return {"deleted_count": count, "deleted_jobs": None, "cancelled_jobs": cancelled}

    async def summary(self) -> dict[str, Any]:
        return await self.client.get_system_summary()

    async def resource(self) -> dict[str, Any]:
        return await self.client.get_resource()

    async def set_resource(self, limits: dict[str, Any]) -> dict[str, Any]:
        return await self.client.set_resource(limits)

    async def aclose(self) -> None:
        await self.client.close()


class LocalBackend:
    """The local store, opened by a Runtime in this process (no server answered)."""

    remote = False

    def __init__(self, settings: Settings) -> None:
        self.runtime = Runtime(settings.replace(execution_mode="inline"))
        self.where = f"local store ({settings.store_target})"

    async def start(self) -> LocalBackend:
        await self.runtime.start()
        return self

    async def submit_bundle(self, path: str) -> str:
        from ._output import EXIT_USAGE, CliError

        raise CliError(
            "submitting a job needs a running server: none answered at MN_GRPC_TARGET",
            code="MN_USAGE_ERROR",
            hint="start one with `mn server`, or run the bundle in this process with `mn run BUNDLE`",
            exit_code=EXIT_USAGE,
        )

    async def job_details(self, job_id: str) -> dict[str, Any]:
        return await self.runtime.job_details(job_id)

    async def list_jobs(self, limit: int | None, include_terminal: bool) -> list[dict[str, Any]]:
        return await self.runtime.list_jobs(limit=limit, include_terminal=include_terminal)

    async def events(self, job_id: str, limit: int | None) -> list[dict[str, Any]]:
        return await self.runtime.events(job_id, -limit if limit else 0)

    async def follow(self, job_id: str, heartbeat_s: float = 5.0, limit: int = 0) -> AsyncIterator[dict[str, Any]]:
        """Stored events, then new ones by polling the store (another process may be writing them)."""
        stored = await self.runtime.events(job_id)
        position = max(len(stored) - limit, 0) if limit > 0 else 0
        quiet = 0.0
        while True:
            fresh = await self.runtime.events(job_id, position)
            position += len(fresh)
            for event in fresh:
                yield event
                if event.get("type") in TERMINAL_EVENTS:
                    return
            if fresh:
                quiet = 0.0
                continue
            await asyncio.sleep(_POLL_S)
            quiet += _POLL_S
            if heartbeat_s > 0 and quiet >= heartbeat_s:
                quiet = 0.0
                yield {"type": HEARTBEAT, "job_id": job_id, "timestamp": now_iso()}

    async def control(self, verb: str, job_id: str) -> str:
        method: Callable[[str], Awaitable[str]] = getattr(self.runtime, verb)
        return await method(job_id)

    async def send_message(self, job_id: str, agent_id: str, message: Any) -> str:
        return await self.runtime.send_message(job_id, agent_id, message)

    async def cleanup(self, everything: bool) -> dict[str, Any]:
        return await self.runtime.cleanup_jobs(all=everything)

    async def summary(self) -> dict[str, Any]:
        return await self.runtime.cluster_overview()

    async def resource(self) -> dict[str, Any]:
        return await self.runtime.resource_report()

    async def set_resource(self, limits: dict[str, Any]) -> dict[str, Any]:
        return await self.runtime.set_resource_limits(limits)

    async def aclose(self) -> None:
        await self.runtime.close()


def target_address(target: str) -> tuple[str, int] | None:
    """``(host, port)`` of a plain ``host:port`` / ``[v6]:port`` / ``dns:///host:port`` target, else None."""
    text = target.removeprefix("dns:///").removeprefix("dns:")
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or "/" in host or not host:
        return None
    return host.strip("[]"), int(port)


async def _tcp_open(address: tuple[str, int]) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(*address), PROBE_TIMEOUT_S)
    except (OSError, TimeoutError):
        return False
    writer.close()
    return True


async def probe(settings: Settings) -> AsyncClient | None:
    """An SDK client when a server answers at ``MN_GRPC_TARGET``, else None."""
    address = target_address(settings.grpc_target)
    if address is not None and not await _tcp_open(address):
        return None  # nothing listens: no gRPC channel is ever created
    client = AsyncClient(
        settings.grpc_target,
        settings.grpc_timeout_seconds,
        auth_token=settings.grpc_auth_token or "",
        admin_token=settings.grpc_admin_token or "",
    )
    try:
        await client.health(timeout=PROBE_TIMEOUT_S)
    except MNError as exc:
        logger.info("no MirrorNeuron server at %s: %s", settings.grpc_target, exc)
        await client.close()
        return None
    return client


async def connect(settings: Settings | None = None) -> Backend:
    """The server when one answers, else the local store."""
    settings = settings or load_settings()
    client = await probe(settings)
    if client is not None:
        return RemoteBackend(client)
    return await LocalBackend(settings).start()


def run_with(call: Callable[[Backend], Awaitable[T]]) -> T:
    """Open a backend, run ``call`` with it on the CLI's event loop, close it."""

    async def go() -> T:
        backend = await connect()
        try:
            return await call(backend)
        finally:
            await backend.aclose()

    return _loop.run(go())
