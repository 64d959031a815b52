"""What the sync and async clients share: the calls (request builder + response decoder), status
code → exception mapping, metadata, channel options and reading a bundle folder.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from .._proto import cluster_pb2, job_pb2, observability_pb2
from .._util import dumps_str, loads
from ..errors import (
    AuthError,
    MNError,
    NotFoundError,
    PermissionDeniedError,
    RetryLaterError,
    RpcError,
    StateError,
    UnavailableError,
    ValidationError,
    WaitTimeoutError,
)

__all__ = ["CALLS", "OPTIONS", "Call", "bundle_files", "decode", "error_from", "metadata_for", "stream_request"]

VERSION = 1
ERRORS_KEY = "mn-errors-bin"
#: bundles travel in one message: lift the 4 MiB default receive limit on the client side
OPTIONS = (("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1))

_ERRORS: dict[grpc.StatusCode, type[MNError]] = {
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.INVALID_ARGUMENT: ValidationError,
    grpc.StatusCode.FAILED_PRECONDITION: StateError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: RetryLaterError,
    grpc.StatusCode.DEADLINE_EXCEEDED: WaitTimeoutError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.UNAUTHENTICATED: AuthError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
}


def error_from(exc: grpc.RpcError) -> MNError:
    """The typed exception for a failed call; ``details["grpc_code"]`` names the status code."""
    code: grpc.StatusCode = exc.code()
    message = exc.details() or code.name.lower()
    details = {"grpc_code": code.name}
    cls = _ERRORS.get(code, RpcError)
    if cls is ValidationError:
        errors = _trailing_errors(exc)
        return ValidationError(errors or message, details=details)
    return cls(message, details=details)


def _trailing_errors(exc: grpc.RpcError) -> list[str] | None:
    try:
        trailing = exc.trailing_metadata() or ()
    except Exception:  # an aio call that never reached the server has none
        return None
    for key, value in trailing:
        if key == ERRORS_KEY:
            found = loads(value)
            return [str(item) for item in found] if isinstance(found, list) and found else None
    return None


def decode(text: str) -> Any:
    """A ``*_json`` field as Python; the JSON-safe envelope key ``version`` is dropped from objects."""
    value = loads(text) if text else {}
    if isinstance(value, dict):
        value.pop("version", None)
    return value


def metadata_for(auth_token: str | None) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {auth_token}"),) if auth_token else ()


def _json_text(value: Any) -> str:
    return value if isinstance(value, str) else dumps_str(value)


def _job(response: Any, job_id: str) -> Any:
    details = decode(response.job_json)
    if not details:
        raise NotFoundError(f"job {job_id} was not found", details={"grpc_code": "OK"})
    return details


@dataclass(frozen=True)
class Call:
    """One unary RPC: the stub (``jobs`` / ``cluster``), the method, and how to build and decode."""

    stub: str
    method: str
    build: Callable[..., Any]
    decode: Callable[..., Any]


def _submit(manifest_json: Any, payloads: Mapping[str, bytes] | None = None, force: bool = False) -> Any:
    files = {k: v.encode("utf-8") if isinstance(v, str) else bytes(v) for k, v in (payloads or {}).items()}
    return job_pb2.SubmitJobRequest(manifest_json=_json_text(manifest_json), payloads=files, version=VERSION)


def _control(method: str) -> Call:
    request = getattr(job_pb2, f"{method}Request")
    return Call("jobs", method, lambda job_id: request(job_id=job_id, version=VERSION), lambda r, *_: r.status)


CALLS: dict[str, Call] = {
    "submit_job": Call("jobs", "SubmitJob", _submit, lambda r, *_: r.job_id),
    "get_job": Call("jobs", "GetJob", lambda job_id: job_pb2.GetJobRequest(job_id=job_id, version=VERSION), _job),
    "list_jobs": Call(
        "jobs",
        "ListJobs",
        lambda limit=0, include_terminal=True: job_pb2.ListJobsRequest(
            limit=limit, include_terminal=include_terminal, version=VERSION
        ),
        lambda r, *_: decode(r.jobs_json).get("data", []),
    ),
    "cancel_job": _control("CancelJob"),
    "pause_job": _control("PauseJob"),
    "resume_job": _control("ResumeJob"),
    "send_message": Call(
        "jobs",
        "SendMessage",
        lambda job_id, agent_id, message: job_pb2.SendMessageRequest(
            job_id=job_id, agent_id=agent_id, message_json=_json_text(message), version=VERSION
        ),
        lambda r, *_: r.status,
    ),
    "clear_jobs": Call(
        "jobs",
        "ClearJobs",
        lambda admin_token=None: job_pb2.ClearJobsRequest(admin_token=admin_token or "", version=VERSION),
        lambda r, *_: int(r.cleared_count),
    ),
    "get_system_summary": Call(
        "cluster",
        "GetSystemSummary",
        lambda: cluster_pb2.GetSystemSummaryRequest(version=VERSION),
        lambda r, *_: decode(r.summary_json),
    ),
    "get_resource": Call(
        "cluster",
        "GetResource",
        lambda: cluster_pb2.GetResourceRequest(version=VERSION),
        lambda r, *_: decode(r.resource_json),
    ),
    "set_resource": Call(
        "cluster",
        "SetResource",
        lambda limits: cluster_pb2.SetResourceRequest(resource_json=_json_text(limits), version=VERSION),
        lambda r, *_: decode(r.resource_json),
    ),
}


def stream_request(job_id: str, follow: bool, heartbeat_interval_ms: int, limit: int) -> Any:
    return observability_pb2.StreamEventsRequest(
        job_id=job_id, follow=follow, heartbeat_interval_ms=heartbeat_interval_ms, limit=limit, version=VERSION
    )


def bundle_files(path: str | os.PathLike[str]) -> tuple[str, dict[str, bytes]]:
    """``(manifest JSON text, {relative path under payloads/: bytes})`` of a bundle folder.

    ``path`` may also name the bundle's ``manifest.json`` (its folder is the bundle).
    """
    root = Path(path)
    if root.is_file():
        root = root.parent
    manifest = root / "manifest.json"
    if not manifest.is_file():
        raise ValidationError(f"{root} is not a job bundle: manifest.json is missing")
    payloads: dict[str, bytes] = {}
    base = root / "payloads"
    if base.is_dir():
        for file in sorted(base.rglob("*")):
            if file.is_file():
                payloads[file.relative_to(base).as_posix()] = file.read_bytes()
    return manifest.read_text(encoding="utf-8"), payloads
