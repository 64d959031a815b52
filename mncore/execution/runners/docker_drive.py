"""Blocking drivers of one docker execution (a container, or an exec in a shared container),
run on the docker runner's thread pool, plus the container limits rule (executor-contract.md §15)."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any

from ..process import KILL_GRACE_S, SAMPLE_INTERVAL_S
from ..tree import TreeSampler, collect_victims, kill_all

logger = logging.getLogger(__name__)

__all__ = ["ContainerDrive", "Drive", "ExecDrive", "container_limits", "sample_loop", "threadsafe"]


def container_limits(limits: dict[str, Any], resources: dict[str, Any]) -> dict[str, Any]:
    """``nano_cpus`` / ``mem_limit`` from usable ``cpu_cores``/``memory_gb``, lowered by the node's
    ``resources.cpu_cores``/``memory_mb``; nothing when neither is known."""
    cpus = _positive(limits.get("cpu_cores"))
    wanted = _positive(resources.get("cpu_cores"))
    if wanted is not None and (cpus is None or wanted < cpus):
        cpus = wanted
    mem_mb = _positive(limits.get("memory_gb"))
    mem_mb = mem_mb * 1024 if mem_mb is not None else None
    wanted = _positive(resources.get("memory_mb"))
    if wanted is not None and (mem_mb is None or wanted < mem_mb):
        mem_mb = wanted
    out: dict[str, Any] = {}
    if cpus is not None:
        out["nano_cpus"] = int(cpus * 1e9)
    if mem_mb is not None:
        out["mem_limit"] = f"{max(int(mem_mb), 6)}m"
    return out


def _positive(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        return None
    return float(value)


def threadsafe(loop: asyncio.AbstractEventLoop, fn: Callable[[Any], None]) -> Callable[[Any], None]:
    def call(value: Any) -> None:
        loop.call_soon_threadsafe(fn, value)

    return call


def sample_loop(loop: asyncio.AbstractEventLoop, state: dict[str, Any], pid: int) -> None:
    sampler = state.setdefault("sampler", TreeSampler(pid))
    sampler.sample()
    state["handle"] = loop.call_later(SAMPLE_INTERVAL_S, sample_loop, loop, state, pid)


class Drive:
    """Blocking driver of one docker execution, run on the runner's thread pool."""

    def __init__(self, feeds: tuple[Callable[[Any], None], Callable[[Any], None]]) -> None:
        self.feeds = feeds
        self.on_pid: Callable[[int], None] = lambda pid: None

    def pump(self, sock: Any) -> None:
        """Demultiplex a raw attach/exec socket into the two captures, then close it."""
        from docker.utils.socket import frames_iter

        try:
            for stream_id, data in frames_iter(sock, False):
                if data:
                    self.feeds[1 if stream_id == 2 else 0](data)
        except OSError:
            pass
        finally:
            # the SDK hands out a SocketIO over the real socket: close both or the fd leaks
            for obj in (sock, getattr(sock, "_sock", None)):
                try:
                    if obj is not None:
                        obj.close()
                except OSError:
                    pass

    def run(self) -> int:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError


class ContainerDrive(Drive):
    def __init__(self, container: Any, feeds: Any) -> None:
        super().__init__(feeds)
        self.container = container

    def run(self) -> int:
        params = {"stdout": 1, "stderr": 1, "stream": 1, "logs": 1}
        sock = self.container.client.api.attach_socket(self.container.id, params=params)
        self.container.start()
        self.container.reload()
        pid = int(self.container.attrs.get("State", {}).get("Pid") or 0)
        if pid:
            self.on_pid(pid)
        self.pump(sock)
        return int(self.container.wait()["StatusCode"])

    def stop(self) -> None:
        try:
            self.container.stop(timeout=int(KILL_GRACE_S))
        except Exception as exc:
            logger.debug("stopping container failed: %s", exc)

    def remove(self) -> None:
        try:
            self.container.remove(force=True)
        except Exception as exc:
            logger.warning("could not remove container %s: %s", getattr(self.container, "name", "?"), exc)


class ExecDrive(Drive):
    def __init__(self, client: Any, container: Any, argv: list[str], env: dict[str, str], workdir: str, feeds: Any):
        super().__init__(feeds)
        self.api = client.api
        self.container = container
        self.argv, self.env, self.workdir = argv, env, workdir
        self.exec_id: str | None = None

    def run(self) -> int:
        created = self.api.exec_create(
            self.container.id, self.argv, stdout=True, stderr=True, environment=self.env, workdir=self.workdir
        )
        self.exec_id = created["Id"]
        sock = self.api.exec_start(self.exec_id, socket=True)
        pid = int(self.api.exec_inspect(self.exec_id).get("Pid") or 0)
        if pid:
            self.on_pid(pid)
        self.pump(sock)
        code = self.api.exec_inspect(self.exec_id).get("ExitCode")
        return int(code) if code is not None else 137

    def stop(self) -> None:
        """Docker has no exec-kill: signal the exec's process tree from the host."""
        if self.exec_id is None:
            return
        pid = int(self.api.exec_inspect(self.exec_id).get("Pid") or 0)
        if not pid:
            return
        victims = collect_victims(pid)
        for proc in victims:
            try:
                proc.terminate()
            except Exception:
                pass
        threading.Event().wait(KILL_GRACE_S)
        kill_all(victims)
