"""MirrorNeuron: a runtime for message-driven multi-agent workflows.

The curated public API. ``Runtime`` is the async API (one node); ``SyncRuntime`` is its
blocking facade. The module-level functions mirror the seed's API on a lazily started default
``SyncRuntime`` configured from the environment.
"""

from __future__ import annotations

import atexit
import threading
from typing import Any

from .bundle import Bundle, load_bundle
from .config import Settings
from .errors import (
    AgentNotFound,
    BundleNotFound,
    ConfigError,
    ExecutionError,
    JobNotFound,
    ManifestError,
    MNError,
    NotFoundError,
    RetryLaterError,
    ShuttingDown,
    StateError,
    StoreUnavailable,
    UnavailableError,
    ValidationError,
    WaitTimeoutError,
)
from .message import Message
from .runtime import Runtime
from .sync import SyncRuntime

__version__ = "0.1.0"

__all__ = [
    # runtime
    "Runtime",
    "Settings",
    "SyncRuntime",
    # data
    "Bundle",
    "Message",
    # seed functions (default runtime)
    "cancel",
    "cleanup_jobs",
    "cluster_overview",
    "events",
    "inspect_agents",
    "inspect_job",
    "inspect_nodes",
    "job_details",
    "list_jobs",
    "pause",
    "resume",
    "run_manifest",
    "send_message",
    "validate_manifest",
    "wait_for_job",
    # errors
    "AgentNotFound",
    "BundleNotFound",
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
    "__version__",
]

_default: SyncRuntime | None = None
_default_lock = threading.Lock()


def _runtime() -> SyncRuntime:
    global _default
    with _default_lock:
        if _default is None:
            _default = SyncRuntime()
            atexit.register(_default.close)
        return _default


def validate_manifest(source: Any) -> dict[str, Any]:
    """Load and validate a bundle folder, manifest mapping or manifest JSON text."""
    return load_bundle(source).to_dict()


def run_manifest(
    source: Any = None, wait: bool = False, timeout: float | None = None, json: bool = False, job_bundle: Any = None
) -> Any:
    return _runtime().run_manifest(source, wait=wait, timeout=timeout, json=json, job_bundle=job_bundle)


def wait_for_job(job_id: str, timeout: float | None = None) -> dict[str, Any]:
    return _runtime().wait_for_job(job_id, timeout)


def inspect_job(job_id: str) -> dict[str, Any]:
    return _runtime().inspect_job(job_id)


def inspect_agents(job_id: str) -> list[dict[str, Any]]:
    return _runtime().inspect_agents(job_id)


def events(job_id: str) -> list[dict[str, Any]]:
    return _runtime().events(job_id)


def inspect_nodes() -> list[dict[str, Any]]:
    return _runtime().inspect_nodes()


def pause(job_id: str) -> str:
    return _runtime().pause(job_id)


def resume(job_id: str) -> str:
    return _runtime().resume(job_id)


def cancel(job_id: str) -> str:
    return _runtime().cancel(job_id)


def send_message(job_id: str, agent_id: str, message: Any) -> str:
    return _runtime().send_message(job_id, agent_id, message)


def list_jobs(limit: int | None = None, include_terminal: bool = True, live_only: bool = False) -> list[dict[str, Any]]:
    return _runtime().list_jobs(limit=limit, include_terminal=include_terminal, live_only=live_only)


def job_details(job_id: str, event_limit: int = 25) -> dict[str, Any]:
    return _runtime().job_details(job_id, event_limit)


def cluster_overview(**list_jobs_options: Any) -> dict[str, Any]:
    return _runtime().cluster_overview(**list_jobs_options)


def cleanup_jobs(all: bool = False) -> dict[str, Any]:
    return _runtime().cleanup_jobs(all=all)
