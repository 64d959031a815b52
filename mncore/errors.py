"""The one exception tree of MirrorNeuron.

Every error the runtime raises on purpose derives from :class:`MNError`. The REST and gRPC
layers map these classes to wire codes in exactly one table (``server/errors.py``)::

    MNError
    ├── ValidationError          bad input: a manifest, an argument, a payload path
    │   ├── ManifestError        a bundle or manifest that does not validate (carries every error)
    │   │   └── BundleReloadInvalid   a registered bundle changed into an invalid one
    │   └── MissingManifestSource     neither ``manifest_json`` nor ``_bundle_path`` was given
    ├── NotFoundError            an unknown job, agent, bundle or route
    │   ├── JobNotFound
    │   ├── AgentNotFound
    │   └── BundleNotFound
    ├── StateError               an operation the job's current state does not allow
    │   ├── RequirementsNotMet   required services are not passing
    │   └── EventGapError        an append would leave a gap: the store lost events
    ├── RetryLaterError          overloaded or back-pressured: try again later
    │   └── ResourceOverloaded   the node's usable resources cannot admit the job
    ├── WaitTimeoutError         waiting for a job or a reply took too long
    ├── UnavailableError         the store or the node cannot serve the call now
    │   ├── StoreUnavailable
    │   └── ShuttingDown
    ├── ConfigError              a setting (environment variable, config file) is invalid
    ├── ExecutionError           a payload could not be run (staging, runner, encoding)
    ├── FingerprintFailed        a bundle's files could not be fingerprinted
    ├── AuthError                a server refused the credentials (SDK: UNAUTHENTICATED / 401)
    │   └── PermissionDeniedError    the call needs the admin token (SDK: PERMISSION_DENIED)
    └── RpcError                 a remote call failed with a status no other class covers (SDK)

Messages follow the spec's exact strings where it fixes them; otherwise they name the field
and how to fix it.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AgentNotFound",
    "AuthError",
    "EventGapError",
    "PermissionDeniedError",
    "RpcError",
    "BundleNotFound",
    "BundleReloadInvalid",
    "FingerprintFailed",
    "MissingManifestSource",
    "RequirementsNotMet",
    "ResourceOverloaded",
    "ConfigError",
    "ExecutionError",
    "JobNotFound",
    "MNError",
    "ManifestError",
    "NotFoundError",
    "RetryLaterError",
    "ShuttingDown",
    "StateError",
    "StoreUnavailable",
    "UnavailableError",
    "ValidationError",
    "WaitTimeoutError",
]


class MNError(Exception):
    """Root of every error raised on purpose by MirrorNeuron."""

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}

    def __str__(self) -> str:
        return self.message


class ValidationError(MNError):
    """Raised when input (an argument, a body, a path) is malformed."""

    def __init__(self, message: str | list[str], *, details: dict[str, Any] | None = None) -> None:
        errors = [message] if isinstance(message, str) else list(message)
        super().__init__("; ".join(errors), details=details)
        self.errors: list[str] = errors


class ManifestError(ValidationError):
    """Raised when a bundle or manifest does not load or validate; ``errors`` lists every problem."""


class BundleReloadInvalid(ManifestError):
    """Raised when a bundle reload finds an invalid manifest (``Manifest validation failed: ...``)."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__(errors)
        self.message = f"Manifest validation failed: {'; '.join(errors)}"


class MissingManifestSource(ValidationError):
    """Raised when a submission names no manifest source (``manifest_json or _bundle_path is required``)."""

    def __init__(self) -> None:
        super().__init__("manifest_json or _bundle_path is required")


class NotFoundError(MNError):
    """Raised when a named thing does not exist."""


class JobNotFound(NotFoundError):
    """Raised when a job id is unknown to the store."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"job {job_id} was not found")
        self.job_id = job_id


class AgentNotFound(NotFoundError):
    """Raised when a job has no agent of that id."""

    def __init__(self, agent_id: str, job_id: str) -> None:
        super().__init__(f"agent {agent_id} is not running for job {job_id}")
        self.agent_id = agent_id
        self.job_id = job_id


class BundleNotFound(NotFoundError):
    """Raised when a bundle id is not in the registry."""

    def __init__(self, bundle_id: str) -> None:
        super().__init__(f"Bundle {bundle_id} not found")
        self.bundle_id = bundle_id


class StateError(MNError):
    """Raised when the job's current status does not allow the operation."""


class RequirementsNotMet(StateError):
    """Raised when required services are not passing (``requirements_not_met: <detail>``)."""

    def __init__(self, detail: str) -> None:
        super().__init__(f"requirements_not_met: {detail}")


class EventGapError(StateError):
    """Raised when events would be appended past the stored end (the store lost some)."""

    def __init__(self, job_id: str, first_seq: int, stored: int) -> None:
        super().__init__(
            f"cannot append events of job {job_id} at seq {first_seq}: the store holds {stored} events; "
            "appends must continue the list without a gap (resume from count_events())"
        )
        self.job_id, self.first_seq, self.stored = job_id, first_seq, stored


class RetryLaterError(MNError):
    """Raised when the node is overloaded or a queue limit was hit; the caller may retry."""


class ResourceOverloaded(RetryLaterError):
    """Raised when usable resources cannot admit a job (``resource_overloaded: <detail>``)."""

    def __init__(self, detail: str) -> None:
        super().__init__(f"resource_overloaded: {detail}")


class WaitTimeoutError(MNError):
    """Raised when waiting for a job (or a reply) exceeded its timeout."""


class UnavailableError(MNError):
    """Raised when the store or the node cannot serve the call right now."""


class StoreUnavailable(UnavailableError):
    """Raised when the persistence backend cannot be reached."""


class ShuttingDown(UnavailableError):
    """Raised when the node is draining and refuses new work."""

    def __init__(self) -> None:
        super().__init__("node is shutting down")


class ConfigError(MNError):
    """Raised at startup when a setting is invalid; the message names the variable."""


class ExecutionError(MNError):
    """Raised when a payload cannot be staged or started."""


class AuthError(MNError):
    """Raised when a server refused the call's credentials (set ``auth_token`` / MN_GRPC_AUTH_TOKEN)."""


class PermissionDeniedError(AuthError):
    """Raised when the call needs the admin token (set ``admin_token`` / MN_GRPC_ADMIN_TOKEN)."""


class RpcError(MNError):
    """Raised when a remote call failed with a status code no other class covers (INTERNAL, UNIMPLEMENTED, ...)."""


class FingerprintFailed(MNError):
    """Raised when a bundle cannot be fingerprinted (``Fingerprint failed: <reason>``)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"Fingerprint failed: {reason}")
