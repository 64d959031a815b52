"""The gRPC API (api.md §6): servicers over :class:`~mncore.runtime.Runtime`, and the node listener.

Services: ``mirrorneuron.job.v1.JobService``, ``mirrorneuron.cluster.v1.ClusterService``,
``mirrorneuron.observability.v1.ObservabilityService``, plus standard health and reflection.
JSON-safe convention: structured values travel as JSON text in ``*_json`` fields, every response
carries ``version = 1``, and every JSON object returned carries ``"version": 1``. Reads degrade
instead of failing: ``GetJob`` of an unknown id answers ``{"version": 1}``; ``ListJobs`` and
``GetSystemSummary`` answer ``{"data": []}`` / ``{}`` (with the version) when the read fails.
Errors become status codes in :mod:`server.grpc_interceptors` (the shared table).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any, TypeAlias

from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from mncore._proto import cluster_pb2, cluster_pb2_grpc, job_pb2, job_pb2_grpc, observability_pb2
from mncore._proto import observability_pb2_grpc as obs_grpc
from mncore._util import dumps_str, loads
from mncore.config import Settings
from mncore.errors import JobNotFound, ValidationError
from mncore.runtime import Runtime
from mncore.submission import parse_submission

from .grpc_interceptors import Gate, ServiceInterceptor, require_admin

logger = logging.getLogger(__name__)

__all__ = ["SERVICE_NAMES", "VERSION", "ClusterServicer", "GrpcServer", "JobServicer", "ObservabilityServicer"]

VERSION = 1
DEFAULT_LIST_LIMIT = 100
_SERVICES = (
    job_pb2.DESCRIPTOR.services_by_name["JobService"],
    cluster_pb2.DESCRIPTOR.services_by_name["ClusterService"],
    observability_pb2.DESCRIPTOR.services_by_name["ObservabilityService"],
)
SERVICE_NAMES = tuple(s.full_name for s in _SERVICES)
Context: TypeAlias = "aio.ServicerContext[Any, Any]"


def versioned(value: dict[str, Any]) -> str:
    """JSON text of ``value`` with ``"version": 1`` added."""
    return dumps_str({**value, "version": VERSION})


def parse_json(text: str, what: str) -> Any:
    """The JSON value of a ``*_json`` request field; INVALID_ARGUMENT naming the field otherwise."""
    try:
        return loads(text)
    except ValueError as exc:
        raise ValidationError(f"{what} must be valid JSON: {exc}") from None


class JobServicer(job_pb2_grpc.JobServiceServicer):
    """``mirrorneuron.job.v1.JobService`` (api.md §6.1)."""

    def __init__(self, runtime: Runtime, settings: Settings) -> None:
        self.runtime = runtime
        self.settings = settings

    async def SubmitJob(self, request: job_pb2.SubmitJobRequest, context: Context) -> job_pb2.SubmitJobResponse:
        self.runtime.check_accepting()
        source, _ = parse_submission({"manifest_json": request.manifest_json}, self.settings.uploads_dir)
        job_id = await self.runtime.submit(source, dict(request.payloads) or None)
        return job_pb2.SubmitJobResponse(job_id=job_id, status="pending", version=VERSION)

    async def GetJob(self, request: job_pb2.GetJobRequest, context: Context) -> job_pb2.GetJobResponse:
        try:
            details = await self.runtime.job_details(request.job_id)
        except JobNotFound:
            details = {}
        return job_pb2.GetJobResponse(job_json=versioned(details), version=VERSION)

    async def ListJobs(self, request: job_pb2.ListJobsRequest, context: Context) -> job_pb2.ListJobsResponse:
        limit = request.limit if request.limit > 0 else DEFAULT_LIST_LIMIT
        try:
            jobs = await self.runtime.list_jobs(limit=limit, include_terminal=request.include_terminal)
        except Exception:
            logger.exception("ListJobs failed; answering an empty list")
            jobs = []
        return job_pb2.ListJobsResponse(jobs_json=versioned({"data": jobs}), version=VERSION)

    async def CancelJob(self, request: job_pb2.CancelJobRequest, context: Context) -> job_pb2.CancelJobResponse:
        status = await self.runtime.cancel(request.job_id)
        return job_pb2.CancelJobResponse(job_id=request.job_id, status=status, version=VERSION)

    async def PauseJob(self, request: job_pb2.PauseJobRequest, context: Context) -> job_pb2.PauseJobResponse:
        status = await self.runtime.pause(request.job_id)
        return job_pb2.PauseJobResponse(job_id=request.job_id, status=status, version=VERSION)

    async def ResumeJob(self, request: job_pb2.ResumeJobRequest, context: Context) -> job_pb2.ResumeJobResponse:
        status = await self.runtime.resume(request.job_id)
        return job_pb2.ResumeJobResponse(job_id=request.job_id, status=status, version=VERSION)

    async def ClearJobs(self, request: job_pb2.ClearJobsRequest, context: Context) -> job_pb2.ClearJobsResponse:
        await require_admin(context, request.admin_token, self.settings.grpc_admin_token)
        result = await self.runtime.cleanup_jobs(all=False)
        return job_pb2.ClearJobsResponse(cleared_count=int(result["deleted_count"]), version=VERSION)

    async def SendMessage(self, request: job_pb2.SendMessageRequest, context: Context) -> job_pb2.SendMessageResponse:
        message = parse_json(request.message_json, "message_json")
        if not isinstance(message, dict):
            raise ValidationError("message_json must be a JSON object (legacy or mn-msg/1 form)")
        status = await self.runtime.send_message(request.job_id, request.agent_id, message)
        return job_pb2.SendMessageResponse(job_id=request.job_id, status=status, version=VERSION)


class ClusterServicer(cluster_pb2_grpc.ClusterServiceServicer):
    """``mirrorneuron.cluster.v1.ClusterService`` (api.md §6.2)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def GetSystemSummary(
        self, request: cluster_pb2.GetSystemSummaryRequest, context: Context
    ) -> cluster_pb2.GetSystemSummaryResponse:
        try:
            summary = await self.runtime.cluster_overview()
        except Exception:
            logger.exception("GetSystemSummary failed; answering an empty summary")
            summary = {}
        return cluster_pb2.GetSystemSummaryResponse(summary_json=versioned(summary), version=VERSION)

    async def GetResource(
        self, request: cluster_pb2.GetResourceRequest, context: Context
    ) -> cluster_pb2.GetResourceResponse:
        report = await self.runtime.resource_report()
        return cluster_pb2.GetResourceResponse(resource_json=versioned(report), version=VERSION)

    async def SetResource(
        self, request: cluster_pb2.SetResourceRequest, context: Context
    ) -> cluster_pb2.SetResourceResponse:
        body = parse_json(request.resource_json, "resource body")
        if isinstance(body, dict):
            body = {k: v for k, v in body.items() if k != "version"}  # the JSON-safe envelope key
        report = await self.runtime.set_resource_limits(body)
        return cluster_pb2.SetResourceResponse(resource_json=versioned(report), version=VERSION)


class ObservabilityServicer(obs_grpc.ObservabilityServiceServicer):
    """``mirrorneuron.observability.v1.ObservabilityService`` (api.md §6.3)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def StreamEvents(
        self, request: observability_pb2.StreamEventsRequest, context: Context
    ) -> AsyncIterator[observability_pb2.StreamEventsResponse]:
        heartbeat_s = request.heartbeat_interval_ms / 1000.0 if request.heartbeat_interval_ms > 0 else None
        items = self.runtime.stream_events(
            request.job_id, follow=request.follow, heartbeat_s=heartbeat_s, limit=max(request.limit, 0)
        )
        try:
            async for _, event in items:
                yield observability_pb2.StreamEventsResponse(event_json=versioned(event), version=VERSION)
        finally:
            await items.aclose()


class GrpcServer:
    """The node's gRPC listener (:class:`server.node.Listener`): ``bind()``, then ``serve(stop)``."""

    name = "grpc"

    def __init__(self, runtime: Runtime, settings: Settings, grace_s: float = 5.0) -> None:
        self.runtime = runtime
        self.settings = settings
        self.grace_s = grace_s
        self.gate = Gate()
        self.health = health.aio.HealthServicer()
        self.server: aio.Server | None = None
        self.url = ""
        self._closing: asyncio.Task[None] | None = None

    def _build(self) -> aio.Server:
        limit = self.settings.api_upload_size_limit_bytes  # a SubmitJob carries a whole bundle
        server = aio.server(
            interceptors=[ServiceInterceptor(self.gate, self.settings.grpc_auth_token)],
            options=[
                ("grpc.so_reuseport", 0),  # a port in use fails the start instead of being shared
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", -1),
            ],
        )
        job_pb2_grpc.add_JobServiceServicer_to_server(JobServicer(self.runtime, self.settings), server)
        cluster_pb2_grpc.add_ClusterServiceServicer_to_server(ClusterServicer(self.runtime), server)
        obs_grpc.add_ObservabilityServiceServicer_to_server(ObservabilityServicer(self.runtime), server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection((*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
        return server

    def bind(self) -> str:
        """Create the server and bind its port (``MN_GRPC_PORT`` 0 picks a free one); ``OSError`` if taken."""
        host, port = self.settings.grpc_host, self.settings.grpc_port
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self.server = self._build()
        try:
            bound = self.server.add_insecure_port(address)
        except RuntimeError as exc:
            raise OSError(f"gRPC: cannot bind {address}: {exc}") from None
        self.url = f"grpc://{address.rsplit(':', 1)[0]}:{bound}"
        return self.url

    def closing(self) -> None:
        """The runtime is closed: health answers NOT_SERVING, every service call UNAVAILABLE."""
        self.gate.stopping = True
        self._closing = asyncio.get_running_loop().create_task(self.health.enter_graceful_shutdown())

    async def serve(self, stop: asyncio.Event) -> None:
        assert self.server is not None, "bind() first"
        for service in ("", *SERVICE_NAMES):
            await self.health.set(service, health_pb2.HealthCheckResponse.SERVING)
        await self.server.start()
        logger.info("gRPC API listening on %s", self.url)
        try:
            await stop.wait()
        finally:
            await self.server.stop(self.grace_s)
            if self._closing is not None:
                await self._closing
