"""The one table: exception class → wire codes (HTTP status, gRPC status code name), api.md §6.

The REST exception handlers and the gRPC interceptor both ask this module, so an error means the
same thing on every surface. Lookup walks the exception's MRO: a leaf maps like its nearest
listed ancestor.
"""

from __future__ import annotations

from dataclasses import dataclass

from mncore.errors import (
    AgentNotFound,
    BundleReloadInvalid,
    ConfigError,
    ExecutionError,
    FingerprintFailed,
    ManifestError,
    MissingManifestSource,
    MNError,
    NotFoundError,
    RequirementsNotMet,
    ResourceOverloaded,
    RetryLaterError,
    StateError,
    UnavailableError,
    ValidationError,
    WaitTimeoutError,
)

__all__ = ["TABLE", "UNEXPECTED", "WireCode", "grpc_code_name", "http_status", "wire_code"]


@dataclass(frozen=True)
class WireCode:
    """How one kind of error travels: REST status and the name of the ``grpc.StatusCode`` member."""

    http: int
    grpc: str


UNEXPECTED = WireCode(500, "INTERNAL")

#: exception class → wire code; order is irrelevant (the MRO decides), every row is the spec's
TABLE: dict[type[BaseException], WireCode] = {
    AgentNotFound: WireCode(404, "NOT_FOUND"),
    NotFoundError: WireCode(404, "NOT_FOUND"),
    ManifestError: WireCode(400, "INVALID_ARGUMENT"),
    ValidationError: WireCode(400, "INVALID_ARGUMENT"),
    BundleReloadInvalid: WireCode(422, "INVALID_ARGUMENT"),
    MissingManifestSource: WireCode(422, "INVALID_ARGUMENT"),
    StateError: WireCode(400, "FAILED_PRECONDITION"),
    RequirementsNotMet: WireCode(412, "FAILED_PRECONDITION"),
    RetryLaterError: WireCode(503, "RESOURCE_EXHAUSTED"),
    ResourceOverloaded: WireCode(503, "RESOURCE_EXHAUSTED"),
    FingerprintFailed: UNEXPECTED,
    WaitTimeoutError: WireCode(504, "DEADLINE_EXCEEDED"),
    UnavailableError: WireCode(503, "UNAVAILABLE"),
    ConfigError: UNEXPECTED,
    ExecutionError: UNEXPECTED,
    MNError: UNEXPECTED,
    TimeoutError: WireCode(504, "DEADLINE_EXCEEDED"),
}


def wire_code(exc: BaseException) -> WireCode:
    """The wire code of ``exc``; anything the table does not know is unexpected (500 / INTERNAL)."""
    for cls in type(exc).__mro__:
        found = TABLE.get(cls)
        if found is not None:
            return found
    return UNEXPECTED


def http_status(exc: BaseException) -> int:
    return wire_code(exc).http


def grpc_code_name(exc: BaseException) -> str:
    return wire_code(exc).grpc
