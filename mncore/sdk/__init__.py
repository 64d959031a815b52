"""Python SDK: a gRPC client for a MirrorNeuron node (api.md §7).

>>> from mncore.sdk import Client
>>> with Client("localhost:50051") as mn:          # doctest: +SKIP
...     job_id = mn.submit_bundle("examples/prime-sweep")
...     for event in mn.stream_events(job_id, follow=True):
...         print(event["type"])

Defaults come from ``MN_GRPC_TARGET`` (``localhost:50051``), ``MN_GRPC_TIMEOUT_SECONDS`` (10; 0
disables), ``MN_GRPC_AUTH_TOKEN`` and ``MN_GRPC_ADMIN_TOKEN``. Results are decoded Python objects;
failures raise the runtime's exception classes (``NOT_FOUND`` → :class:`~mncore.errors.NotFoundError`,
``INVALID_ARGUMENT`` → :class:`~mncore.errors.ValidationError`, ``FAILED_PRECONDITION`` →
:class:`~mncore.errors.StateError`, ``RESOURCE_EXHAUSTED`` → :class:`~mncore.errors.RetryLaterError`,
``DEADLINE_EXCEEDED`` → :class:`~mncore.errors.WaitTimeoutError`, ``UNAVAILABLE`` →
:class:`~mncore.errors.UnavailableError`) or :class:`AuthError`, :class:`PermissionDeniedError`,
:class:`RpcError`.
"""

from __future__ import annotations

from ..errors import AuthError, PermissionDeniedError, RpcError
from ._aio import AsyncClient
from ._client import Client

__all__ = ["AsyncClient", "AuthError", "Client", "PermissionDeniedError", "RpcError"]
