"""The synchronous gRPC client (api.md §7)."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from .._proto import cluster_pb2_grpc, job_pb2_grpc, observability_pb2_grpc
from ..config import Settings
from ._wire import CALLS, OPTIONS, bundle_files, decode, error_from, metadata_for, stream_request

__all__ = ["UNSET", "Client", "ClientConfig"]

UNSET: Any = object()


@dataclass(frozen=True)
class ClientConfig:
    """Where and how to call: missing values come from ``MN_GRPC_*`` (through :class:`Settings`)."""

    target: str
    timeout: float | None
    auth_token: str | None
    admin_token: str | None

    @classmethod
    def resolve(cls, target: str | None, timeout: Any, auth_token: str | None, admin_token: str | None) -> ClientConfig:
        settings = None
        if target is None or timeout is UNSET or auth_token is None or admin_token is None:
            settings = Settings.from_env()
        if timeout is UNSET:
            assert settings is not None
            timeout = settings.grpc_timeout_seconds
        return cls(
            target=target or (settings.grpc_target if settings else "localhost:50051"),
            timeout=float(timeout) if timeout else None,  # 0 / None: no deadline
            auth_token=auth_token if auth_token is not None else (settings.grpc_auth_token if settings else None),
            admin_token=admin_token if admin_token is not None else (settings.grpc_admin_token if settings else None),
        )


class _Channel:
    """The channel, stubs and call metadata both clients share; ``_grpc`` is ``grpc`` or ``grpc.aio``."""

    _grpc: Any = grpc

    def __init__(
        self,
        target: str | None = None,
        timeout: float | None = UNSET,
        auth_token: str | None = None,
        admin_token: str | None = None,
        *,
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        self.config = ClientConfig.resolve(target, timeout, auth_token, admin_token)
        self.target = self.config.target
        if credentials is None:
            self._channel = self._grpc.insecure_channel(self.target, options=OPTIONS)
        else:
            self._channel = self._grpc.secure_channel(self.target, credentials, options=OPTIONS)
        self._stubs = {
            "jobs": job_pb2_grpc.JobServiceStub(self._channel),
            "cluster": cluster_pb2_grpc.ClusterServiceStub(self._channel),
        }
        self._events = observability_pb2_grpc.ObservabilityServiceStub(self._channel)
        self._metadata = metadata_for(self.config.auth_token)


class Client(_Channel):
    """MirrorNeuron over gRPC. Methods return decoded Python objects; failures raise
    :class:`~mncore.errors.MNError` subclasses (``NOT_FOUND`` → ``NotFoundError``, ...).

    ``Client(target=MN_GRPC_TARGET, timeout=MN_GRPC_TIMEOUT_SECONDS, auth_token=MN_GRPC_AUTH_TOKEN,
    admin_token=MN_GRPC_ADMIN_TOKEN)``; ``credentials`` makes a TLS channel. Use as a context manager
    or call :meth:`close`.
    """

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def _invoke(self, name: str, *args: Any) -> Any:
        call = CALLS[name]
        method = getattr(self._stubs[call.stub], call.method)
        try:
            response = method(call.build(*args), timeout=self.config.timeout, metadata=self._metadata)
        except grpc.RpcError as exc:
            raise error_from(exc) from None
        return call.decode(response, *args)

    # -- jobs ---------------------------------------------------------------------------------
    def submit_job(self, manifest_json: Any, payloads: Mapping[str, bytes] | None = None, force: bool = False) -> str:
        """Submit a manifest (JSON text or a mapping) with payload files; returns the job id.

        ``force`` has no wire field; it is accepted for the later service preflight and ignored.
        """
        return str(self._invoke("submit_job", manifest_json, payloads, force))

    def submit_bundle(self, path: str | os.PathLike[str]) -> str:
        """Submit a bundle folder (``manifest.json`` + ``payloads/**``); returns the job id."""
        manifest, payloads = bundle_files(path)
        return self.submit_job(manifest, payloads)

    def get_job(self, job_id: str) -> dict[str, Any]:
        """Job details ``{job, summary, agents, recent_events, sandboxes}``; ``NotFoundError`` if unknown."""
        return dict(self._invoke("get_job", job_id))

    def list_jobs(self, limit: int = 0, include_terminal: bool = True) -> list[dict[str, Any]]:
        """Job summaries, newest first (``limit`` <= 0: the server's default, 100)."""
        return list(self._invoke("list_jobs", limit, include_terminal))

    def cancel_job(self, job_id: str) -> str:
        return str(self._invoke("cancel_job", job_id))

    def pause_job(self, job_id: str) -> str:
        return str(self._invoke("pause_job", job_id))

    def resume_job(self, job_id: str) -> str:
        return str(self._invoke("resume_job", job_id))

    def send_message(self, job_id: str, agent_id: str, message: Any) -> str:
        """Deliver ``message`` (a mapping or JSON text, legacy or mn-msg/1 form); returns ``"delivered"``."""
        return str(self._invoke("send_message", job_id, agent_id, message))

    def clear_jobs(self) -> int:
        """Delete terminal jobs; returns how many were deleted (sends ``admin_token`` when set)."""
        return int(self._invoke("clear_jobs", self.config.admin_token))

    def stream_events(
        self,
        job_id: str,
        follow: bool = False,
        heartbeat_interval_ms: int = 0,
        limit: int = 0,
        timeout: float | None = None,
    ) -> Iterator[dict[str, Any]]:
        """The job's events (the last ``limit`` when > 0), then with ``follow`` live ones until the
        terminal event; ``{"type": "stream_heartbeat"}`` items after each ``heartbeat_interval_ms`` of
        silence (0: none). ``timeout`` None: no deadline (the client's call timeout does not apply).
        """
        request = stream_request(job_id, follow, heartbeat_interval_ms, limit)
        call = self._events.StreamEvents(request, timeout=timeout, metadata=self._metadata)
        return _events(call)

    # -- cluster ------------------------------------------------------------------------------
    def get_system_summary(self) -> dict[str, Any]:
        """``{"nodes": [...], "jobs": [...]}``."""
        return dict(self._invoke("get_system_summary"))

    def get_resource(self) -> dict[str, Any]:
        return dict(self._invoke("get_resource"))

    def set_resource(self, limits: Mapping[str, Any]) -> dict[str, Any]:
        """Set limits (``{"cpu", "gpu", "memory", "disk"}``, each 25/50/75/100); returns the new report."""
        return dict(self._invoke("set_resource", dict(limits)))

    def health(self, service: str = "", timeout: float | None = UNSET) -> str:
        """The standard health check: ``"SERVING"``, ``"NOT_SERVING"``, ..."""
        wait = self.config.timeout if timeout is UNSET else timeout
        stub = health_pb2_grpc.HealthStub(self._channel)
        try:
            response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=wait)
        except grpc.RpcError as exc:
            raise error_from(exc) from None
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))


def _events(call: Any) -> Iterator[dict[str, Any]]:
    try:
        for response in call:
            yield decode(response.event_json)
    except grpc.RpcError as exc:
        raise error_from(exc) from None
    finally:
        call.cancel()
