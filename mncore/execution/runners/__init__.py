"""Runner registry and runner selection (executor-contract.md §1).

``resolve_runner(config, settings)`` picks the runner of an executor node and, when a sandbox
was wanted but bubblewrap does not work here, the ``executor_runner_fallback`` payload that the
executor emits once before its first run. ``get_runner(name, settings)`` returns the shared
runner instance for that name.
"""

from __future__ import annotations

from typing import Any

from ..._util import inspect
from ...config import Settings
from ...errors import ValidationError
from .base import Runner
from .bwrap import BwrapRunner, probe_bwrap
from .docker import DockerRunner
from .host import HostRunner
from .python import PythonRunner

__all__ = ["RUNNER_CLASSES", "RUNNER_MODULES", "Runner", "close_runners", "get_runner", "resolve_runner"]

RUNNER_CLASSES: dict[str, type[Runner]] = {
    "host": HostRunner,
    "bwrap": BwrapRunner,
    "docker": DockerRunner,
    "python": PythonRunner,
}
#: legacy ``runner_module`` values; ``None`` = the node default (sandbox) runner
RUNNER_MODULES: dict[str, str | None] = {
    "MirrorNeuron.Runner.HostLocal": "host",
    "MirrorNeuron.Sandbox.OpenShell": None,
    "MirrorNeuron.Runner.OpenShell": None,
    "MirrorNeuron.Runner.DockerWorker": "docker",
}
_instances: dict[tuple[str, Settings], Runner] = {}


def get_runner(name: str, settings: Settings) -> Runner:
    """The runner instance for ``name`` (one per name and settings, so caches are shared)."""
    key = (name, settings)
    runner = _instances.get(key)
    if runner is None:
        cls = RUNNER_CLASSES.get(name)
        if cls is None:
            raise ValidationError(f"unsupported runner {inspect(name)} (use one of {', '.join(RUNNER_CLASSES)})")
        runner = _instances[key] = cls(settings)
    return runner


async def close_runners(settings: Settings | None = None) -> None:
    """Close and forget the shared runner instances (of ``settings``, or all of them)."""
    for key in [k for k in _instances if settings is None or k[1] == settings]:
        await _instances.pop(key).close()


def resolve_runner(config: dict[str, Any], settings: Settings) -> tuple[str, dict[str, Any] | None]:
    """``(runner name, executor_runner_fallback payload or None)`` for an executor's config."""
    runner = config.get("runner")
    if runner is not None:
        if runner not in RUNNER_CLASSES:
            raise ValidationError(f"unsupported runner {inspect(runner)} (use one of {', '.join(RUNNER_CLASSES)})")
        if runner == "bwrap":
            return _sandbox("bwrap", settings)
        return str(runner), None
    module = config.get("runner_module")
    if module is not None and module not in RUNNER_MODULES:
        selected, _ = _node_default(settings)
        return selected, {"requested": str(module), "selected": selected, "reason": f"unknown runner_module {module}"}
    mapped = RUNNER_MODULES.get(module) if module is not None else None
    if mapped is not None:
        return mapped, None
    return _node_default(settings)


def _node_default(settings: Settings) -> tuple[str, dict[str, Any] | None]:
    default = settings.default_runner
    if default == "host":
        return "host", None  # the operator chose no sandbox: no warning
    if default == "docker":
        return "docker", None
    return _sandbox(default, settings)  # "auto" or "bwrap"


def _sandbox(requested: str, settings: Settings) -> tuple[str, dict[str, Any] | None]:
    ok, reason = probe_bwrap(settings)
    if ok:
        return "bwrap", None
    return "host", {"requested": requested, "selected": "host", "reason": reason}
