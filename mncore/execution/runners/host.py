"""The ``host`` runner: a plain subprocess on the node, no isolation (trusted payloads only)."""

from __future__ import annotations

from ..beacons import BeaconMonitor
from ..environment import runtime_environ
from ..output import StreamCapture
from ..process import ProcessResult, run_process
from ..request import RunRequest
from ..workspace import Workspace
from .base import SubprocessRunner

__all__ = ["HostRunner"]


class HostRunner(SubprocessRunner):
    """Runs in the workspace (or the literal ``workdir``) with the runtime's own environment."""

    name = "host"
    sandboxed = False
    timeout_error = "host local command timed out"

    def base_env(self) -> dict[str, str]:
        return runtime_environ()

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
        # the input file path is unique per attempt: it finds double-forked daemons on kill
        marker = ("MN_INPUT_FILE", env["MN_INPUT_FILE"]) if "MN_INPUT_FILE" in env else None
        result = await run_process(
            argv,
            cwd=ws.host_workdir,
            env=env,
            stdout=captures[0],
            stderr=captures[1],
            timeout=timeout,
            beacons=beacons,
            marker=marker,
        )
        return result, result.exit_code
