"""The runner contract, and the staged-subprocess pipeline shared by host, bwrap and docker.

A :class:`Runner` turns one :class:`RunRequest` into one :class:`AttemptOutcome`; retries,
leases and the executor's events belong to the executor agent. ``emit(event_type, payload)``
receives ``agent_beacon`` / ``agent_beacon_missed`` events as they happen.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Callable
from typing import Any, ClassVar

from ..._util import inspect
from ...config import Settings
from ...errors import ExecutionError
from ..beacons import BEACON_DEADLINE_ERROR, BeaconMonitor
from ..environment import BEACON_PREFIX, build_command, build_env, placeholder_values
from ..output import Redactor, StreamCapture, parse_structured
from ..process import ProcessResult
from ..request import AttemptOutcome, RunRequest
from ..workspace import Workspace, host_runner_name, sandbox_name, sandbox_upload_path, stage

__all__ = ["Emit", "Runner", "SubprocessRunner", "build_outcome", "max_output_bytes", "timeout_seconds"]

Emit = Callable[[str, dict[str, Any]], None]
_ZERO_USAGE = {"wall_ms": 0, "cpu_user_ms": 0, "cpu_system_ms": 0, "peak_rss_bytes": 0}


class Runner(abc.ABC):
    """One way of running a payload. Instances are reused for many runs (see ``get_runner``)."""

    name: ClassVar[str]

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @classmethod
    def available(cls, settings: Settings) -> tuple[bool, str]:
        """Whether this runner works on this node, and why not."""
        return True, ""

    @abc.abstractmethod
    async def run(self, request: RunRequest, emit: Emit) -> AttemptOutcome:
        """Run one attempt. Never raises for payload or staging problems: they are outcomes."""

    async def cleanup_job(self, job_id: str) -> None:  # noqa: B027 - optional hook
        """Remove job-scoped resources (shared containers, ...) once the job is terminal."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release what the runner holds (clients, threads); called once at node shutdown."""

    # -- helpers for subclasses ---------------------------------------------------------------
    def node_name(self, request: RunRequest) -> str:
        return request.node_name or self.settings.node_name

    def start_error(self, request: RunRequest, name: str | None, text: str) -> AttemptOutcome:
        """The outcome of an attempt whose process could not be started (§8)."""
        return AttemptOutcome(
            {"error": text, "runner": self.name, "sandbox_name": name, "node_name": self.node_name(request)}
        )


def timeout_seconds(config: dict[str, Any]) -> float | None:
    raw = config.get("timeout_seconds")
    if raw is None or raw == "":
        return None
    try:
        value = float(raw)
    except (TypeError, ValueError):
        value = 0.0
    if value <= 0 or isinstance(raw, bool):
        raise ExecutionError(f"config.timeout_seconds must be a positive number of seconds (got {inspect(raw)})")
    return value


def max_output_bytes(config: dict[str, Any], settings: Settings) -> int:
    raw = config.get("max_output_bytes")
    if raw is None:
        return settings.max_artifact_bytes
    if isinstance(raw, bool) or not isinstance(raw, (int, float)) or raw < 0:
        raise ExecutionError(f"config.max_output_bytes must be a non-negative integer (got {inspect(raw)})")
    return int(raw)


def build_outcome(
    runner: str,
    ws: Workspace,
    node_name: str,
    *,
    exit_code: int,
    runner_exit_code: int,
    stdout: StreamCapture,
    stderr: StreamCapture,
    notes: list[str],
    redact: Redactor,
    usage: dict[str, int],
    started: float,
    error: str | None = None,
) -> AttemptOutcome:
    """The §7 result map (+ ``error`` on failure) and the structured stdout of a success."""
    out = redact(stdout.text())
    err = redact(stderr.text())
    for label, capture in (("stdout", stdout), ("stderr", stderr)):
        if capture.truncated:
            notes.append(f"{label} truncated: {capture.omitted} bytes omitted (max_output_bytes)")
    sep = "\n" if out and err and not out.endswith("\n") else ""
    result: dict[str, Any] = {
        "sandbox_name": ws.name,
        "remote_dir": ws.remote_dir,
        "exit_code": exit_code,
        "runner_exit_code": runner_exit_code,
        "stdout": out.strip(),
        "stderr": err.strip(),
        "logs": redact("\n".join(notes)),
        "raw_output": out + sep + err,
        "runner": runner,
        "node_name": node_name,
        "duration_ms": int((time.monotonic() - started) * 1000),
        "resource_usage": usage,
    }
    if error is None and exit_code != 0:
        error = f"command exited with status {exit_code}"
    if error is not None:
        result["error"] = error
        return AttemptOutcome(result)
    structured = None if stdout.truncated else parse_structured(result["stdout"])
    return AttemptOutcome(result, structured)


class SubprocessRunner(Runner):
    """Stage → environment → command → :meth:`execute` → result map. Subclasses provide ``execute``."""

    sandboxed: ClassVar[bool] = True  # minimal base env, paths seen under sandbox_upload_path
    python_fallback: ClassVar[bool] = True
    recycle_workspaces: ClassVar[bool] = True  # see ``spares``; off where payloads may outlive the run
    timeout_error: ClassVar[str] = ""  # default: "<runner> command timed out"

    def workspace_name(self, request: RunRequest) -> str:
        if not self.sandboxed:
            return host_runner_name(request.config, request.job_id, request.agent_id)
        return sandbox_name(request.config, request.job_id, request.agent_id, request.invocation, request.attempt)

    def base_env(self) -> dict[str, str]:
        raise NotImplementedError

    def stage(self, request: RunRequest, name: str) -> Workspace:
        remote = sandbox_upload_path(request.config) if self.sandboxed else None
        return stage(
            request, self.name, name, self.settings.temp_dir, remote_root=remote, recycle=self.recycle_workspaces
        )

    @abc.abstractmethod
    async def execute(
        self,
        request: RunRequest,
        ws: Workspace,
        env: dict[str, str],
        argv: list[str],
        captures: tuple[StreamCapture, StreamCapture],
        timeout: float | None,
        beacons: BeaconMonitor,
        notes: list[str],
    ) -> tuple[ProcessResult, int]:
        """Run ``argv``; return the process result and the runner wrapper's exit code.
        Raise ``OSError`` / :class:`ExecutionError` when it cannot start."""

    async def run(self, request: RunRequest, emit: Emit) -> AttemptOutcome:
        started = time.monotonic()
        name = self.workspace_name(request)
        try:
            ws = self.stage(request, name)
        except (ExecutionError, OSError) as exc:
            return self.start_error(request, name, str(exc))
        try:
            return await self._run_staged(request, emit, ws, started)
        finally:
            ws.remove()

    def _plan(
        self, request: RunRequest, ws: Workspace, node: str, notes: list[str]
    ) -> tuple[dict[str, str], list[str] | None, float | None, int]:
        """``(env, argv or None, timeout, output cap)``; raises :class:`ExecutionError`."""
        config = request.config
        env = build_env(request, ws, node, self.base_env())
        argv = build_command(
            config.get("command"),
            placeholder_values(request, ws),
            max_length=self.settings.max_command_length,
            search_path=env.get("PATH", "") if self.python_fallback else None,
            notes=notes,
        )
        return env, argv, timeout_seconds(config), max_output_bytes(config, self.settings)

    async def _run_staged(self, request: RunRequest, emit: Emit, ws: Workspace, started: float) -> AttemptOutcome:
        config = request.config
        node = self.node_name(request)
        notes: list[str] = []
        try:
            env, argv, timeout, cap = self._plan(request, ws, node, notes)
        except ExecutionError as exc:
            return self.start_error(request, ws.name, str(exc))
        redact = Redactor(env)
        stdout, stderr = StreamCapture(cap), StreamCapture(cap)
        if argv is None:
            stdout.feed(f"No command configured for agent {request.agent_id}".encode())
            return build_outcome(
                self.name, ws, node, exit_code=0, runner_exit_code=0, stdout=stdout, stderr=stderr,
                notes=notes, redact=redact, usage=dict(_ZERO_USAGE), started=started,
            )  # fmt: skip
        beacons = BeaconMonitor(config, emit, request.attempt, redact)
        prefix = env.get("MN_AGENT_BEACON_STDOUT_PREFIX") or BEACON_PREFIX
        stdout = StreamCapture(cap, prefix.encode(), beacons.agent_beacon)
        beacons.start()
        try:
            proc, runner_exit = await self.execute(request, ws, env, argv, (stdout, stderr), timeout, beacons, notes)
        except (OSError, ExecutionError) as exc:
            beacons.finish(False)
            text = str(exc) if isinstance(exc, ExecutionError) else f"cannot start {argv[0]}: {exc.strerror or exc}"
            return self.start_error(request, ws.name, text)
        except BaseException:
            beacons.stop()
            raise
        notes.extend(proc.notes)
        error = None
        if proc.beacon_missed:
            error = BEACON_DEADLINE_ERROR
        elif proc.timed_out:
            error = self.timeout_error or f"{self.name} command timed out"
        outcome = build_outcome(
            self.name, ws, node, exit_code=proc.exit_code, runner_exit_code=runner_exit, stdout=stdout,
            stderr=stderr, notes=notes, redact=redact, usage=proc.usage(), started=started, error=error,
        )  # fmt: skip
        beacons.finish(outcome.ok)
        return outcome
