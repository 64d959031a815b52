"""Running one payload process (executor-contract.md §6, §7).

The process is started with :class:`subprocess.Popen` in a new session (stdin ``/dev/null``,
stdout/stderr on our own pipes) and then driven entirely by event-loop callbacks: readers on
both pipes, a reader on a pidfd for the exit (reaped with ``os.wait4`` for its rusage), a
50 ms timer sampling the process tree, and timers for timeout and kill. No task or thread per
run, which keeps a run's overhead close to the bare spawn.

Kill (timeout, cancel, missed beacon): collect the victims with psutil, SIGTERM the group, and
1 s later SIGKILL the group and every victim still alive.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import psutil

from .beacons import BeaconMonitor
from .output import StreamCapture, exit_code_from_returncode
from .tree import TreeSampler, any_alive, collect_victims, kill_all, signal_group

logger = logging.getLogger(__name__)

__all__ = ["KILL_GRACE_S", "ProcessResult", "run_process"]

KILL_GRACE_S = 1.0
SAMPLE_INTERVAL_S = 0.05
FIRST_SAMPLE_S = 0.005  # early first look: short payloads would otherwise report no memory at all
#: how long to keep reading after the command exited while a background process holds its pipes
PIPE_GRACE_S = 0.5
_READ_SIZE = 65536
_HAVE_PIDFD = hasattr(os, "pidfd_open")
_devnull: list[int] = []


def _devnull_fd() -> int:
    if not _devnull:
        _devnull.append(os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC))
    return _devnull[0]


@dataclass(slots=True)
class ProcessResult:
    """What happened to the process. ``exit_code`` follows §7 (signal n → 128 + n)."""

    exit_code: int
    timed_out: bool = False
    beacon_missed: bool = False
    wall_ms: int = 0
    cpu_user_ms: int = 0
    cpu_system_ms: int = 0
    peak_rss_bytes: int = 0
    notes: list[str] = field(default_factory=list)

    def usage(self) -> dict[str, int]:
        return {
            "wall_ms": self.wall_ms,
            "cpu_user_ms": self.cpu_user_ms,
            "cpu_system_ms": self.cpu_system_ms,
            "peak_rss_bytes": self.peak_rss_bytes,
        }


async def run_process(
    argv: list[str],
    *,
    cwd: str | None,
    env: dict[str, str],
    stdout: StreamCapture,
    stderr: StreamCapture,
    timeout: float | None = None,
    beacons: BeaconMonitor | None = None,
    marker: tuple[str, str] | None = None,
    pass_fds: tuple[int, ...] = (),
) -> ProcessResult:
    """Run ``argv`` to completion and return how it ended; output goes into the captures.

    Raises ``OSError`` when the process cannot be started. Cancelling the caller kills the
    process tree (SIGTERM, SIGKILL after 1 s), waits for it, and re-raises.
    """
    loop = asyncio.get_running_loop()
    out_r, out_w = os.pipe2(os.O_CLOEXEC)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    try:
        proc = subprocess.Popen(
            argv,
            stdin=_devnull_fd(),
            stdout=out_w,
            stderr=err_w,
            cwd=cwd,
            env=env,
            start_new_session=True,
            close_fds=True,
            pass_fds=pass_fds,
        )
    except BaseException:
        for fd in (out_r, err_r):
            os.close(fd)
        raise
    finally:
        os.close(out_w)
        os.close(err_w)
    run = _Run(loop, proc, out_r, err_r, stdout, stderr, marker)
    if beacons is not None:
        beacons.on_missed = run.kill_for_beacon
    run.start(timeout)
    try:
        await run.wait()
    finally:
        run.close()
    return run.result()


def _reap_quietly(pid: int) -> None:
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


class _Run:
    """Callback state of one process. Everything runs on the loop thread."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        proc: subprocess.Popen[bytes],
        out_fd: int,
        err_fd: int,
        stdout: StreamCapture,
        stderr: StreamCapture,
        marker: tuple[str, str] | None,
    ) -> None:
        self.loop = loop
        self.proc = proc
        self.pid = proc.pid
        self.started = time.monotonic()
        self.ended: float | None = None
        self.rusage: Any = None
        self.returncode: int | None = None
        self.captures = {out_fd: stdout, err_fd: stderr}
        self.sampler = TreeSampler(self.pid)
        self.marker = marker
        self.timed_out = False
        self.beacon_missed = False
        self.notes: list[str] = []
        self.done: asyncio.Future[None] = loop.create_future()
        self._pidfd = -1
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._killing = False
        self._killed = False
        self._victims: list[psutil.Process] = []

    # -- lifecycle --------------------------------------------------------------------------
    def start(self, timeout: float | None) -> None:
        loop = self.loop
        for fd in self.captures:
            os.set_blocking(fd, False)
            loop.add_reader(fd, self._on_readable, fd)
        if _HAVE_PIDFD:
            try:
                self._pidfd = os.pidfd_open(self.pid)
            except OSError:
                self._pidfd = -1
        if self._pidfd >= 0:
            loop.add_reader(self._pidfd, self._on_exit)
        else:  # no pidfd (old kernel): a thread per process blocks in wait4, as asyncio's watcher does
            threading.Thread(target=self._wait_thread, name=f"mn-wait-{self.pid}", daemon=True).start()
        self._timers["sample"] = loop.call_later(FIRST_SAMPLE_S, self._sample)
        if timeout is not None:
            self._timers["timeout"] = loop.call_later(timeout, self._on_timeout)

    async def wait(self) -> None:
        try:
            await self.done
        except asyncio.CancelledError:
            self.kill()
            self.done = self.loop.create_future()
            self._check_done()
            try:
                await asyncio.wait_for(self.done, KILL_GRACE_S + 2.0)
            except TimeoutError:
                logger.warning("process %s did not exit after SIGKILL", self.pid)
            raise

    def close(self) -> None:
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        for fd in list(self.captures):
            self._close_stream(fd)
        if self._pidfd >= 0:
            self.loop.remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = -1
        if self.returncode is None:  # gave up waiting: kill, and reap in the background
            signal_group(self.pid, signal.SIGKILL)
            kill_all(self._victims)
            self.proc.returncode = -signal.SIGKILL
            threading.Thread(target=_reap_quietly, args=(self.pid,), daemon=True).start()

    def result(self) -> ProcessResult:
        ru = self.rusage
        end = self.ended if self.ended is not None else time.monotonic()
        sampler = self.sampler
        # ru_maxrss is useless here: a forked child inherits the runtime's own high-water mark
        return ProcessResult(
            exit_code=exit_code_from_returncode(self.returncode if self.returncode is not None else -9),
            timed_out=self.timed_out,
            beacon_missed=self.beacon_missed,
            wall_ms=int((end - self.started) * 1000),
            cpu_user_ms=max(int(ru.ru_utime * 1000) if ru is not None else 0, sampler.cpu_user_ms),
            cpu_system_ms=max(int(ru.ru_stime * 1000) if ru is not None else 0, sampler.cpu_system_ms),
            peak_rss_bytes=sampler.peak_rss,
            notes=self.notes,
        )

    # -- callbacks --------------------------------------------------------------------------
    def _on_readable(self, fd: int) -> None:
        try:
            data = os.read(fd, _READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            self.captures[fd].feed(data)
            return
        self._close_stream(fd)
        self._check_done()

    def _close_stream(self, fd: int) -> None:
        capture = self.captures.pop(fd, None)
        if capture is None:
            return
        self.loop.remove_reader(fd)
        os.close(fd)
        capture.close()

    def _on_exit(self) -> None:
        try:
            pid, status, ru = os.wait4(self.pid, os.WNOHANG)
        except ChildProcessError:
            pid, status, ru = self.pid, 255 << 8, None
        if pid == 0:
            return
        self.loop.remove_reader(self._pidfd)
        os.close(self._pidfd)
        self._pidfd = -1
        self._reaped(pid, status, ru)

    def _wait_thread(self) -> None:
        try:
            _, status, ru = os.wait4(self.pid, 0)
        except ChildProcessError:
            status, ru = 255 << 8, None
        try:
            self.loop.call_soon_threadsafe(self._reaped, self.pid, status, ru)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            pass

    def _reaped(self, _pid: int, status: int, ru: Any) -> None:
        self.ended = time.monotonic()
        self.rusage = ru
        self.returncode = os.waitstatus_to_exitcode(status)
        self.proc.returncode = self.returncode  # we reaped it: keep Popen from waiting or warning
        handle = self._timers.pop("sample", None)
        if handle is not None:
            handle.cancel()
        if self.captures:
            self._timers["pipes"] = self.loop.call_later(PIPE_GRACE_S, self._pipes_held)
        self._check_done()

    def _pipes_held(self) -> None:
        for fd in list(self.captures):
            self._drain(fd)
        if self.captures:
            self.notes.append(
                f"output streams still open {PIPE_GRACE_S:g} s after the command exited "
                "(a background process holds them); stopped reading"
            )
            for fd in list(self.captures):
                self._close_stream(fd)
        self._check_done()

    def _drain(self, fd: int) -> None:
        capture = self.captures.get(fd)
        while capture is not None:
            try:
                data = os.read(fd, _READ_SIZE)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self._close_stream(fd)
                return
            capture.feed(data)

    def _sample(self) -> None:
        self.sampler.sample()
        self._timers["sample"] = self.loop.call_later(SAMPLE_INTERVAL_S, self._sample)

    def _on_timeout(self) -> None:
        self._timers.pop("timeout", None)
        if self.returncode is None:
            self.timed_out = True
            self.kill()

    def kill_for_beacon(self) -> None:
        if self.returncode is None:
            self.beacon_missed = True
            self.kill()

    # -- killing ------------------------------------------------------------------------------
    def kill(self) -> None:
        """SIGTERM the group now; SIGKILL the group and every collected victim after 1 s."""
        if self._killing:
            return
        self._killing = True
        root = self.pid if self.returncode is None else None
        self._victims = collect_victims(root, self.sampler.seen.values(), self.marker)
        signal_group(self.pid, signal.SIGTERM)
        for proc in self._victims:
            try:
                proc.send_signal(signal.SIGTERM)
            except psutil.Error:
                pass
        self._timers["kill"] = self.loop.call_later(KILL_GRACE_S, self._sigkill)

    def _sigkill(self) -> None:
        self._timers.pop("kill", None)
        signal_group(self.pid, signal.SIGKILL)
        kill_all(self._victims)
        self._killed = True
        self._check_done()

    def _check_done(self) -> None:
        if self.returncode is None or self.captures or self.done.done():
            return
        if self._killing and not self._killed:
            if any_alive(self._victims):
                return  # the SIGKILL timer finishes the job
            handle = self._timers.pop("kill", None)
            if handle is not None:
                handle.cancel()
            self._sigkill()
            return
        self.done.set_result(None)
