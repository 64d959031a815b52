"""The multiprocess execution backend: pool worker processes fed through shared memory.

The supervisor (this process) creates the shared memory first: per executor pool, a request
mailbox and ``K`` worker processes (``min(capacity, cores)`` unless ``MN_POOL_WORKERS`` says otherwise), plus one
completion mailbox and one control mailbox per worker. An attempt is one msgpack record into the
pool's request mailbox; whichever worker takes it posts ``started``, streams ``event`` records
(beacons) and one ``done`` record with the outcome and resource peaks.

A worker that dies is restarted. Its in-flight attempts are re-queued (at most
``MAX_REQUEUES`` times; a crashed worker is not the payload's fault) or else failed with an error
the retry policy sees, and each affected agent gets ``executor_worker_lost``. Python-runner calls
cannot be interrupted inside a worker, so their timeout and cancel kill the worker.
Shared memory is unlinked on every exit path; a crashed supervisor's segments are swept at the
next start (``cleanup_stale``).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from .._fast import Mailbox, cleanup_stale
from ..config import Settings
from .backend import Emit, ExecutionBackend
from .request import AttemptOutcome, RunRequest
from .runners import get_runner
from .runners.base import timeout_seconds
from .worker import WorkerArgs, pack, unpack

logger = logging.getLogger(__name__)

__all__ = ["MAX_REQUEUES", "ProcessBackend"]

MAX_REQUEUES = 3
LOST_AFTER_S = 5.0  # a request nobody took while the ring is empty was lost in a crash window
STOP_TIMEOUT_S = 5.0
REQUEST_RING = 4 << 20
COMPLETION_RING = 8 << 20
CONTROL_RING = 1 << 16


@dataclass
class _Run:
    id: int
    pool: str
    request: RunRequest
    record: bytes
    emit: Emit
    future: asyncio.Future[AttemptOutcome]
    enqueued: float = field(default_factory=time.monotonic)
    worker: _Slot | None = None
    requeues: int = 0
    timer: asyncio.TimerHandle | None = None


@dataclass
class _Slot:
    """One worker position of a pool; the process in it is replaced when it dies."""

    pool: str
    index: int
    control: Any
    process: subprocess.Popen[bytes] | None = None
    pidfd: int | None = None  # readable when the process exits
    pid: int | None = None
    runs: set[int] = field(default_factory=set)
    killed_for: dict[int, str] = field(default_factory=dict)  # run id -> error text (timeout / cancel)


class ProcessBackend(ExecutionBackend):
    """Runs attempts in per-pool worker processes; started lazily on the first attempt."""

    def __init__(self, settings: Settings, capacities: dict[str, int]) -> None:
        self.settings = settings
        self.capacities = dict(capacities)
        self._ids = itertools.count(1)
        self._runs: dict[int, _Run] = {}
        self._requests: dict[str, Any] = {}
        self._slots: list[_Slot] = []
        self._by_key: dict[str, _Slot] = {}
        self._completions: Any = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._start_lock = asyncio.Lock()
        self._started = False
        self._closing = False
        self._prefix = f"mn_{os.getpid()}_{os.urandom(3).hex()}"
        self.restarts = 0
        self.exit_codes: list[int | None] = []  # of workers that exited while the pool was running

    # -- lifecycle -------------------------------------------------------------------------
    async def _ensure_started(self) -> None:
        if self._started:
            return
        async with self._start_lock:
            if self._started:
                return
            removed = cleanup_stale("mn_")
            if removed:
                logger.info("swept %d stale shared memory segment(s) of a crashed supervisor", len(removed))
            self._completions = Mailbox.create(f"{self._prefix}_done", COMPLETION_RING)
            cores = os.cpu_count() or 1
            for pool, capacity in self.capacities.items():
                self._requests[pool] = Mailbox.create(f"{self._prefix}_{pool}_req", REQUEST_RING)
                workers = self.settings.pool_workers or min(capacity, cores)
                for index in range(max(1, workers)):
                    control = Mailbox.create(f"{self._prefix}_{pool}_{index}_ctl", CONTROL_RING)
                    self._slots.append(_Slot(pool, index, control))
            self._by_key = {f"{s.pool}/{s.index}": s for s in self._slots}
            for slot in self._slots:
                self._spawn(slot)
            self._tasks = [asyncio.ensure_future(self._read()), asyncio.ensure_future(self._sweep())]
            self._started = True

    def _spawn(self, slot: _Slot) -> None:
        pool_workers = sum(1 for s in self._slots if s.pool == slot.pool)
        args = WorkerArgs(
            self.settings,
            slot.pool,
            slot.index,
            self._requests[slot.pool].name,
            self._completions.name,
            slot.control.name,
            os.getpid(),
            max(1, -(-self.capacities[slot.pool] // pool_workers)),
        )
        process = subprocess.Popen(
            [sys.executable, "-m", "mncore.execution.worker", args.to_json()],
            stdin=subprocess.DEVNULL,
            close_fds=True,
        )
        slot.process, slot.pid = process, process.pid
        slot.pidfd = os.pidfd_open(process.pid)
        asyncio.get_running_loop().add_reader(slot.pidfd, self._on_exit, slot, process, slot.pidfd)

    async def close(self) -> None:
        self._closing = True
        if not self._started:
            return
        for task in self._tasks:
            task.cancel()
        loop = asyncio.get_running_loop()
        live = [slot for slot in self._slots if slot.process is not None]
        for slot in live:
            assert slot.process is not None and slot.pidfd is not None
            loop.remove_reader(slot.pidfd)
            if slot.process.poll() is None:
                slot.process.terminate()  # SIGTERM: drain (nothing runs any more at close)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for slot in live:
            assert slot.process is not None and slot.pidfd is not None
            try:
                await asyncio.to_thread(slot.process.wait, max(0.01, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                slot.process.kill()
                await asyncio.to_thread(slot.process.wait)
            os.close(slot.pidfd)
        for run in self._runs.values():
            if not run.future.done():
                run.future.cancel()
        for box in [self._completions, *self._requests.values(), *(s.control for s in self._slots)]:
            box.close()
            box.unlink()
        self._started = False

    # -- attempts --------------------------------------------------------------------------
    async def run(self, request: RunRequest, emit: Emit) -> AttemptOutcome:
        await self._ensure_started()
        pool = (request.lease or {}).get("pool") or "default"
        if pool not in self._requests:
            pool = "default"
        run_id = next(self._ids)
        record = pack({"id": run_id, "req": request.to_dict()})
        run = _Run(run_id, pool, request, record, emit, asyncio.get_running_loop().create_future())
        self._runs[run_id] = run
        try:
            await self._requests[pool].put_async(record)
            return await run.future
        except asyncio.CancelledError:
            self._cancel(run)
            raise
        finally:
            self._forget(run)

    def _forget(self, run: _Run) -> None:
        self._runs.pop(run.id, None)
        if run.timer is not None:
            run.timer.cancel()
        if run.worker is not None:
            run.worker.runs.discard(run.id)

    def _cancel(self, run: _Run) -> None:
        slot = run.worker
        if slot is None:
            return  # still in the ring: the worker that takes it finds no waiter; its result is dropped
        if run.request.runner == "python":
            self._kill(slot, run.id, "cancelled")
        else:
            slot.control.put(pack({"t": "cancel", "id": run.id}), timeout=0)

    def _kill(self, slot: _Slot, run_id: int, reason: str) -> None:
        """A python-runner call cannot be interrupted: its worker is killed and replaced."""
        slot.killed_for[run_id] = reason
        if slot.pid is not None:
            try:
                os.kill(slot.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    # -- completions -----------------------------------------------------------------------
    async def _read(self) -> None:
        box = self._completions
        while True:
            for raw in await box.get_many_async(256):
                self._handle(unpack(raw))

    def _handle(self, record: dict[str, Any]) -> None:
        kind = record.get("t")
        if kind == "ready":
            return
        run = self._runs.get(record.get("id", -1))
        if run is None:
            return  # a cancelled or abandoned attempt
        if kind == "started":
            self._started_on(run, record)
        elif kind == "event":
            run.emit(record["type"], record["payload"])
        elif kind == "done" and not run.future.done():
            if record.get("cancelled"):
                run.future.cancel()
            else:
                run.future.set_result(AttemptOutcome.from_dict(record["outcome"]))

    def _started_on(self, run: _Run, record: dict[str, Any]) -> None:
        slot = self._by_key.get(record["w"])
        if slot is None or slot.pid != record.get("pid"):
            return
        run.worker = slot
        slot.runs.add(run.id)
        if run.request.runner == "python":
            limit = timeout_seconds(run.request.config)
            if limit:
                loop = asyncio.get_running_loop()
                run.timer = loop.call_later(limit + 0.25, self._kill, slot, run.id, "python command timed out")

    # -- worker death ----------------------------------------------------------------------
    def _on_exit(self, slot: _Slot, process: subprocess.Popen[bytes], pidfd: int) -> None:
        loop = asyncio.get_running_loop()
        loop.remove_reader(pidfd)
        os.close(pidfd)
        code = process.wait()
        if self._closing:
            return
        self.exit_codes.append(code)
        logger.warning(
            "pool worker %s/%d (pid %s) exited with %s; restarting it", slot.pool, slot.index, slot.pid, code
        )
        self.restarts += 1
        lost = [self._runs[i] for i in sorted(slot.runs) if i in self._runs]
        killed_for, slot.killed_for, slot.runs = slot.killed_for, {}, set()
        self._spawn(slot)
        for run in lost:
            run.worker = None
            reason = killed_for.get(run.id)
            if reason is not None:
                self._fail(run, reason, code)
            else:
                self._requeue_or_fail(run, slot, code)

    def _requeue_or_fail(self, run: _Run, slot: _Slot, code: int | None) -> None:
        requeue = run.requeues < MAX_REQUEUES
        run.emit(
            "executor_worker_lost",
            {
                "pool": slot.pool,
                "worker_pid": slot.pid,
                "exit_code": code,
                "requeued": requeue,
                "requeues": run.requeues,
            },
        )
        if not requeue:
            self._fail(run, f"pool worker exited with {code} while running the attempt (unavailable)", code)
            return
        run.requeues += 1
        run.enqueued = time.monotonic()
        self._requests[run.pool].put(run.record)

    def _fail(self, run: _Run, error: str, code: int | None) -> None:
        if run.future.done():
            return
        request = run.request
        result = {
            "error": error,
            "exit_code": 137 if code == -signal.SIGKILL else 1,
            "runner": request.runner,
            "node_name": request.node_name,
            "stdout": "",
            "stderr": "",
            "logs": "",
            "raw_output": "",
        }
        run.future.set_result(AttemptOutcome(result))

    async def _sweep(self) -> None:
        """Safety net for a worker killed between taking a request and reporting it."""
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            for run in list(self._runs.values()):
                lost = run.worker is None and not run.future.done() and now - run.enqueued > LOST_AFTER_S
                if lost and self._requests[run.pool].stats().get("records", 1) == 0:
                    logger.warning("attempt %d was lost in a worker crash; re-queueing it", run.id)
                    run.enqueued = now
                    self._requests[run.pool].put(run.record)

    async def cleanup_job(self, job_id: str) -> None:
        """Job-scoped sandbox resources live in the docker daemon, reachable from here by name."""
        try:
            await get_runner("docker", self.settings).cleanup_job(job_id)
        except Exception:
            logger.exception("cleanup of job %s in the docker runner failed", job_id)

    def stats(self) -> dict[str, Any]:
        return {
            "workers": [{"pool": s.pool, "index": s.index, "pid": s.pid, "runs": len(s.runs)} for s in self._slots],
            "restarts": self.restarts,
        }
