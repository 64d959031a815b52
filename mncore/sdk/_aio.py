"""The asyncio gRPC client: :class:`AsyncClient` has :class:`~mncore.sdk.Client`'s methods as coroutines."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping
from typing import Any

import grpc
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ._client import UNSET, _Channel
from ._wire import CALLS, bundle_files, decode, error_from, stream_request

__all__ = ["AsyncClient"]


class AsyncClient(_Channel):
    """Like :class:`~mncore.sdk.Client`, on a ``grpc.aio`` channel; use ``async with`` or ``await close()``."""

    _grpc = aio

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    async def _invoke(self, name: str, *args: Any) -> Any:
        call = CALLS[name]
        method = getattr(self._stubs[call.stub], call.method)
        try:
            response = await method(call.build(*args), timeout=self.config.timeout, metadata=self._metadata)
        except grpc.RpcError as exc:
            raise error_from(exc) from None
        return call.decode(response, *args)

    async def submit_job(
        self, manifest_json: Any, payloads: Mapping[str, bytes] | None = None, force: bool = False
    ) -> str:
        return str(await self._invoke("submit_job", manifest_json, payloads, force))

    async def submit_bundle(self, path: str | os.PathLike[str]) -> str:
        manifest, payloads = bundle_files(path)
        return await self.submit_job(manifest, payloads)

    async def get_job(self, job_id: str) -> dict[str, Any]:
        return dict(await self._invoke("get_job", job_id))

    async def list_jobs(self, limit: int = 0, include_terminal: bool = True) -> list[dict[str, Any]]:
        return list(await self._invoke("list_jobs", limit, include_terminal))

    async def cancel_job(self, job_id: str) -> str:
        return str(await self._invoke("cancel_job", job_id))

    async def pause_job(self, job_id: str) -> str:
        return str(await self._invoke("pause_job", job_id))

    async def resume_job(self, job_id: str) -> str:
        return str(await self._invoke("resume_job", job_id))

    async def send_message(self, job_id: str, agent_id: str, message: Any) -> str:
        return str(await self._invoke("send_message", job_id, agent_id, message))

    async def clear_jobs(self) -> int:
        return int(await self._invoke("clear_jobs", self.config.admin_token))

    async def stream_events(
        self,
        job_id: str,
        follow: bool = False,
        heartbeat_interval_ms: int = 0,
        limit: int = 0,
        timeout: float | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        """Async iterator of events; see :meth:`mncore.sdk.Client.stream_events`."""
        request = stream_request(job_id, follow, heartbeat_interval_ms, limit)
        call = self._events.StreamEvents(request, timeout=timeout, metadata=self._metadata)
        try:
            async for response in call:
                yield decode(response.event_json)
        except grpc.RpcError as exc:
            raise error_from(exc) from None
        finally:
            call.cancel()

    async def get_system_summary(self) -> dict[str, Any]:
        return dict(await self._invoke("get_system_summary"))

    async def get_resource(self) -> dict[str, Any]:
        return dict(await self._invoke("get_resource"))

    async def set_resource(self, limits: Mapping[str, Any]) -> dict[str, Any]:
        return dict(await self._invoke("set_resource", dict(limits)))

    async def health(self, service: str = "", timeout: float | None = UNSET) -> str:
        wait = self.config.timeout if timeout is UNSET else timeout
        stub = health_pb2_grpc.HealthStub(self._channel)
        try:
            response = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=wait)
        except grpc.RpcError as exc:
            raise error_from(exc) from None
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))
