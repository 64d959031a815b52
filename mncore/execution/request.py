"""What crosses into a runner and what comes back: one executor invocation attempt.

Both classes hold plain JSON/msgpack-safe values only (``bytes`` bodies included), because a run
request travels from the supervisor to a pool worker and its outcome travels back
(ARCHITECTURE.md §1). ``to_dict`` / ``from_dict`` are shallow and cheap: they are on the hot path.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

__all__ = ["RESULT_KEYS", "AttemptOutcome", "RunRequest"]

#: keys of the result map of one attempt (executor-contract.md §7), in the order they are built
RESULT_KEYS = (
    "sandbox_name",
    "remote_dir",
    "exit_code",
    "runner_exit_code",
    "stdout",
    "stderr",
    "logs",
    "raw_output",
    "runner",
    "node_name",
    "duration_ms",
    "resource_usage",
)


@dataclass(slots=True)
class RunRequest:
    """One attempt of one executor invocation, as given to :meth:`Runner.run`.

    ``node_name`` is the executing node (``MN_EXECUTION_NODE``); empty means "use the runner's
    ``Settings.node_name``". ``message`` is the normalised message dict (``Message.to_dict()``);
    its body may be ``bytes`` or the stored ``{"$bytes": ...}`` form. ``limits`` holds the node's
    usable ``cpu_cores`` / ``memory_gb`` (docker limits); ``resources`` the manifest node's
    ``resources`` (``cpu_cores`` / ``memory_mb``).
    """

    job_id: str
    agent_id: str
    agent_type: str = "executor"
    template_type: str = "generic"
    node_name: str = ""
    runner: str = "host"
    config: dict[str, Any] = field(default_factory=dict)
    message: dict[str, Any] = field(default_factory=dict)
    agent_state: Any = field(default_factory=dict)
    invocation: int = 1
    attempt: int = 1
    bundle_root: str | None = None
    payloads_path: str | None = None
    resources: dict[str, Any] = field(default_factory=dict)
    limits: dict[str, Any] = field(default_factory=dict)
    lease: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _REQUEST_FIELDS}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunRequest:
        """Rebuild from :meth:`to_dict` output; unknown keys are ignored (newer senders)."""
        return cls(**{k: v for k, v in data.items() if k in _REQUEST_FIELDS})


_REQUEST_FIELDS = tuple(f.name for f in fields(RunRequest))


@dataclass(slots=True)
class AttemptOutcome:
    """The result of one attempt.

    ``result`` is the spec §7 result map, plus ``"error"`` when the attempt failed (§8); a runner
    that could not start the process returns ``{"error": ..., "runner", "sandbox_name",
    "node_name"}`` only. ``structured`` is the parsed structured stdout (§9) of a successful
    attempt, or the mapping returned by a python callable when it has a §9 key.
    """

    result: dict[str, Any]
    structured: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return "error" not in self.result

    @property
    def error(self) -> str | None:
        err = self.result.get("error")
        return None if err is None else str(err)

    def to_dict(self) -> dict[str, Any]:
        return {"result": self.result, "structured": self.structured}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AttemptOutcome:
        return cls(dict(data.get("result") or {}), data.get("structured"))
