"""A pool worker process: takes run requests from its pool's mailbox and runs them.

Started by :class:`~mncore.execution.pools.ProcessBackend` as ``python -m
mncore.execution.worker <args JSON>``: a fresh interpreter, because forking the supervisor (an
event loop with store and executor threads) is not safe. One process per slot of ``K`` per pool.
Stateless: it attaches the shared mailboxes by name, runs each request with the
executor runners on its own uvloop, streams beacon events back, and posts one completion per
request. Signals: SIGINT is ignored (the supervisor owns Ctrl+C); the first SIGTERM drains
(takes nothing new, finishes what runs), a second exits at once (running payloads are killed).
The worker exits by itself when its supervisor is gone.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import logging
import os
import signal
import sys
import traceback
from dataclasses import dataclass
from typing import Any

import msgpack

from .. import _loop
from .._fast import Mailbox
from ..config import Settings
from .request import AttemptOutcome, RunRequest
from .runners import get_runner

logger = logging.getLogger(__name__)

__all__ = ["WorkerArgs", "pack", "unpack", "worker_main"]

SUPERVISOR_CHECK_S = 1.0


def pack(record: dict[str, Any]) -> bytes:
    return msgpack.packb(record, use_bin_type=True)


def unpack(data: bytes) -> dict[str, Any]:
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


@dataclass(frozen=True)
class WorkerArgs:
    settings: Settings
    pool: str
    index: int
    requests: str  # mailbox names
    completions: str
    control: str
    supervisor_pid: int
    max_inflight: int

    def to_json(self) -> str:
        data = dataclasses.asdict(self)
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str) -> WorkerArgs:
        data = json.loads(text)
        data["settings"] = Settings(**data["settings"])
        return cls(**data)


def worker_main(args: WorkerArgs) -> None:
    """Process entry point."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    role = f"pool-worker:{args.pool}/{args.index}"
    logging.basicConfig(
        level=getattr(logging, (args.settings.log_level or "WARNING").upper(), logging.WARNING),
        format=f"%(asctime)s %(levelname)s pid=%(process)d role={role} %(name)s: %(message)s",
    )
    _loop.run(_Worker(args).serve())


class _Worker:
    def __init__(self, args: WorkerArgs) -> None:
        self.args = args
        self.key = f"{args.pool}/{args.index}"
        self.requests = Mailbox.attach(args.requests)
        self.completions = Mailbox.attach(args.completions)
        self.control = Mailbox.attach(args.control)
        self.tasks: dict[int, asyncio.Task[None]] = {}
        self.cancelled: set[int] = set()  # runs the supervisor asked to cancel
        self.draining = False
        self.stop = asyncio.Event()
        self.room = asyncio.Event()

    def post(self, record: dict[str, Any]) -> None:
        self.completions.put(pack(record))  # blocks only if the supervisor is far behind

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self._on_sigterm)
        self.post({"t": "ready", "w": self.key, "pid": os.getpid()})
        helpers = [
            asyncio.ensure_future(self._take()),
            asyncio.ensure_future(self._control()),
            asyncio.ensure_future(self._watch_supervisor()),
        ]
        await self.stop.wait()
        for task in helpers:
            task.cancel()
        await asyncio.gather(*helpers, return_exceptions=True)
        if self.tasks:
            await asyncio.gather(*self.tasks.values(), return_exceptions=True)
        for box in (self.requests, self.completions, self.control):
            box.close()

    def _on_sigterm(self) -> None:
        if self.draining:  # second SIGTERM: exit now, killing running payloads
            for task in self.tasks.values():
                task.cancel()
            self.stop.set()
            return
        self.draining = True
        if not self.tasks:
            self.stop.set()

    async def _take(self) -> None:
        """One request at a time: a synchronous python-runner call blocks this loop, and a request
        taken behind it would wait while another worker idles."""
        while not self.draining:
            if len(self.tasks) >= self.args.max_inflight:
                self.room.clear()
                await self.room.wait()
                continue
            raw = await self.requests.get_async(timeout=0.5)
            if raw is None:
                continue
            record = unpack(raw)
            run_id = record["id"]
            self.post({"t": "started", "id": run_id, "w": self.key, "pid": os.getpid()})
            task = asyncio.ensure_future(self._run(run_id, RunRequest.from_dict(record["req"])))
            self.tasks[run_id] = task
            task.add_done_callback(functools.partial(self._finished, run_id))
            await asyncio.sleep(0)  # let it start (and block this loop if it is synchronous)

    def _finished(self, run_id: int, _task: object = None) -> None:
        self.tasks.pop(run_id, None)
        self.cancelled.discard(run_id)
        self.room.set()
        if self.draining and not self.tasks:
            self.stop.set()

    async def _run(self, run_id: int, request: RunRequest) -> None:
        def emit(event_type: str, payload: dict[str, Any]) -> None:
            self.post({"t": "event", "id": run_id, "type": event_type, "payload": payload})

        try:
            outcome = await get_runner(request.runner, self.args.settings).run(request, emit)
        except asyncio.CancelledError:
            # Only a cancel the supervisor asked for is reported; a run cut short because this
            # worker is exiting is re-queued by the supervisor when it sees the worker gone.
            if run_id in self.cancelled:
                self.post({"t": "done", "id": run_id, "cancelled": True})
            return
        except Exception as exc:  # a runner bug must not take the worker down
            logger.exception("runner %s failed", request.runner)
            outcome = AttemptOutcome(
                {
                    "error": f"{type(exc).__name__}: {exc}",
                    "exit_code": 1,
                    "runner": request.runner,
                    "stderr": traceback.format_exc(),
                    "node_name": request.node_name,
                }
            )
        self.post({"t": "done", "id": run_id, "outcome": outcome.to_dict()})

    async def _control(self) -> None:
        while True:
            for raw in await self.control.get_many_async(64):
                record = unpack(raw)
                if record.get("t") == "cancel":
                    task = self.tasks.get(record["id"])
                    if task is not None:
                        self.cancelled.add(record["id"])
                        task.cancel()

    async def _watch_supervisor(self) -> None:
        while True:
            await asyncio.sleep(SUPERVISOR_CHECK_S)
            try:
                os.kill(self.args.supervisor_pid, 0)
            except ProcessLookupError:
                logger.warning("supervisor %d is gone; exiting", self.args.supervisor_pid)
                self.draining = True
                for task in self.tasks.values():
                    task.cancel()
                self.stop.set()
                return


if __name__ == "__main__":
    worker_main(WorkerArgs.from_json(sys.argv[1]))
