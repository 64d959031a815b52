"""``mn monitor``: the full-screen live dashboard; ``mn job monitor ID``: one job, live.

The cluster view refreshes the system summary when an event of a followed job arrives (and every
few seconds), so it moves with the event streams; the job view follows the job's event stream
(REST SSE when ``MN_API_BASE_URL`` is set, else the backend's stream) and refreshes its agents
table as events arrive. Keys are read without blocking; ``q`` quits from anywhere. Without a
terminal on stdout one snapshot is printed; ``--json`` streams ``mn.cli.stream/v1`` NDJSON.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import click
from rich.console import Console, RenderableType
from rich.live import Live

from ..errors import MNError
from ..live import HEARTBEAT, TERMINAL_EVENTS
from ..monitor import ACTIVE, TERMINAL
from ._backend import Backend, run_with
from ._common import command, json_option, settings
from ._dashboard import ClusterState, JobState, render_cluster, render_job
from ._keys import KeyReader
from ._output import Output
from ._rest import RestClient

logger = logging.getLogger(__name__)

__all__ = ["job_monitor", "monitor"]

REFRESH_S = 2.0
MIN_GAP_S = 0.25
MAX_FOLLOWED = 8


class Screen:
    """One Live display showing the top of a stack of views; keys go to the top view."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.views: list[Any] = []
        self.stop = asyncio.Event()
        self.dirty = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def push(self, view: Any) -> None:
        view.start(self)
        self.views.append(view)
        self.dirty.set()

    async def pop(self) -> None:
        await self.views.pop().close()
        self.dirty.set()

    def on_key(self, key: str) -> None:
        view = self.views[-1]
        if key == "q" and not view.confirming:
            self.stop.set()
        else:
            view.on_key(key)
        self.dirty.set()

    async def run(self) -> None:
        live = Live(self.views[-1].render(), console=self.console, screen=True, auto_refresh=False)
        with live, KeyReader(self.on_key):
            try:
                while not self.stop.is_set():
                    await _wait_any(self.dirty, self.stop, timeout=1.0)
                    self.dirty.clear()
                    live.update(self.views[-1].render(), refresh=True)
            finally:
                for view in reversed(self.views):
                    await view.close()
                for task in list(self._tasks):
                    task.cancel()


async def _wait_any(first: asyncio.Event, second: asyncio.Event, timeout: float) -> None:
    waiters = [asyncio.ensure_future(first.wait()), asyncio.ensure_future(second.wait())]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


class _View:
    """Shared task handling of the views: background tasks, a poke to refresh early."""

    confirming = False

    def __init__(self) -> None:
        self.tasks: list[asyncio.Task[Any]] = []
        self.poke = asyncio.Event()
        self.screen: Screen | None = None

    def changed(self) -> None:
        if self.screen is not None:
            self.screen.dirty.set()

    async def refresh_loop(self, refresh: Callable[[], Coroutine[Any, Any, None]]) -> None:
        while True:
            await refresh()
            self.changed()
            try:
                await asyncio.wait_for(self.poke.wait(), REFRESH_S)
            except TimeoutError:
                pass
            self.poke.clear()
            await asyncio.sleep(MIN_GAP_S)

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.tasks.clear()


class ClusterView(_View):
    def __init__(self, backend: Backend, running_only: bool, limit: int) -> None:
        super().__init__()
        self.backend, self.running_only, self.limit = backend, running_only, limit
        self.state = ClusterState(where=backend.where)
        self.followed: dict[str, asyncio.Task[Any]] = {}

    @property
    def confirming(self) -> bool:  # type: ignore[override]
        return self.state.confirm is not None

    def start(self, screen: Screen) -> None:
        self.screen = screen
        self.tasks.append(asyncio.ensure_future(self.refresh_loop(self.refresh)))

    def render(self) -> RenderableType:
        return render_cluster(self.state)

    async def refresh(self) -> None:
        try:
            summary = await self.backend.summary()
        except MNError as exc:
            self.state.message = f"refresh failed: {exc}"
            return
        chosen = (self.state.selected_job() or {}).get("job_id")
        jobs = [j for j in summary.get("jobs") or [] if not (self.running_only and j.get("status") in TERMINAL)]
        self.state.jobs, self.state.nodes = jobs[: self.limit], summary.get("nodes") or []
        ids = [j.get("job_id") for j in self.state.jobs]
        self.state.selected = ids.index(chosen) if chosen in ids else self.state.selected
        for job in self.state.jobs[:MAX_FOLLOWED]:
            if job.get("status") in ACTIVE and job["job_id"] not in self.followed:
                self.followed[job["job_id"]] = task = asyncio.ensure_future(self.follow(job["job_id"]))
                self.tasks.append(task)

    async def follow(self, job_id: str) -> None:
        try:
            async for event in self.backend.follow(job_id, 5.0, 5):
                if event.get("type") != HEARTBEAT:
                    self.state.events.appendleft(event)
                    self.poke.set()
                    self.changed()
        except MNError as exc:
            logger.info("event stream of %s ended: %s", job_id, exc)
            self.followed.pop(job_id, None)

    def on_key(self, key: str) -> None:
        state = self.state
        if state.confirm is not None:
            job_id, state.confirm = state.confirm, None
            if key in ("y", "Y") and self.screen is not None:
                self.screen.spawn(self.cancel(job_id))
            else:
                state.message = "cancel aborted"
            return
        selected = state.selected_job()
        if key in ("up", "k"):
            state.selected = max(state.selected - 1, 0)
        elif key in ("down", "j"):
            state.selected = min(state.selected + 1, max(len(state.jobs) - 1, 0))
        elif key in ("enter", "o") and selected and self.screen is not None:
            self.screen.push(JobView(self.backend, selected["job_id"], nested=True))
        elif key == "c" and selected:
            state.confirm = selected["job_id"]
            state.message = f"Cancel job {selected['job_id']}? (y/n)"

    async def cancel(self, job_id: str) -> None:
        try:
            self.state.message = f"Job cancel successful. ({job_id}: {await self.backend.control('cancel', job_id)})"
        except MNError as exc:
            self.state.message = f"cancel failed: {exc}"
        self.poke.set()
        self.changed()


class JobView(_View):
    def __init__(self, backend: Backend, job_id: str, nested: bool = False) -> None:
        super().__init__()
        self.backend = backend
        self.state = JobState(job_id=job_id, where=backend.where, nested=nested)
        base_url = settings().api_base_url
        self.rest = RestClient(base_url, settings().api_token) if base_url else None

    @property
    def confirming(self) -> bool:  # type: ignore[override]
        return self.state.confirm

    def start(self, screen: Screen) -> None:
        self.screen = screen
        self.tasks += [asyncio.ensure_future(self.refresh_loop(self.refresh)), asyncio.ensure_future(self.follow())]

    def render(self) -> RenderableType:
        return render_job(self.state)

    async def refresh(self) -> None:
        try:
            self.state.details = await self.backend.job_details(self.state.job_id)
        except MNError as exc:
            self.state.message = f"refresh failed: {exc}"

    def events(self) -> AsyncIterator[dict[str, Any]]:
        if self.rest is not None:
            return self.rest.follow(self.state.job_id)
        return self.backend.follow(self.state.job_id, 5.0, 20)

    async def follow(self) -> None:
        try:
            async for event in self.events():
                if event.get("type") != HEARTBEAT:
                    self.state.events.appendleft(event)
                    self.poke.set()
                    self.changed()
        except MNError as exc:
            self.state.message = f"event stream ended: {exc}"

    def on_key(self, key: str) -> None:
        state = self.state
        if state.confirm:
            state.confirm = False
            if key in ("y", "Y") and self.screen is not None:
                self.screen.spawn(self.control("cancel"))
            else:
                state.message = "cancel aborted"
        elif key == "c":
            state.confirm, state.message = True, f"Cancel job {state.job_id}? (y/n)"
        elif key == "p" and self.screen is not None:
            self.screen.spawn(self.control("resume" if state.status == "paused" else "pause"))
        elif key in ("escape", "backspace", "b") and state.nested and self.screen is not None:
            self.screen.spawn(self.screen.pop())

    async def control(self, verb: str) -> None:
        try:
            result = await self.backend.control(verb, self.state.job_id)
            await self.refresh()  # the next key (p toggles) must see the new status
            self.state.message = f"Job {verb} successful. ({result})"
        except MNError as exc:
            self.state.message = f"{verb} failed: {exc}"
        self.poke.set()
        self.changed()


async def _show(out: Output, view: Any) -> int:
    console = Console(no_color=out.plain)
    if not console.is_terminal:  # piped: one snapshot
        await view.refresh()
        await view.close()
        console.print(view.render(), height=console.height)
        return 0
    screen = Screen(console)
    screen.push(view)
    await screen.run()
    return 0


async def _cluster_json(out: Output, backend: Backend, running_only: bool, limit: int) -> int:
    while True:
        summary = await backend.summary()
        jobs = [j for j in summary.get("jobs") or [] if not (running_only and j.get("status") in TERMINAL)]
        out.stream("snapshot", nodes=summary.get("nodes") or [], jobs=jobs[:limit])
        await asyncio.sleep(REFRESH_S)


async def _job_json(out: Output, backend: Backend, job_id: str) -> int:
    out.stream("snapshot", job_id=job_id, details=await backend.job_details(job_id))
    async for event in backend.follow(job_id, 5.0, 0):
        if event.get("type") != HEARTBEAT:
            out.stream("event", job_id=job_id, event=event)
        if event.get("type") in TERMINAL_EVENTS:
            break
    out.stream("complete", job_id=job_id, details=await backend.job_details(job_id))
    return 0


async def _job(out: Output, backend: Backend, job_id: str) -> int:
    if out.json:
        return await _job_json(out, backend, job_id)
    await backend.job_details(job_id)  # an unknown job fails here, before the screen opens
    return await _show(out, JobView(backend, job_id))


@click.command("monitor")
@click.argument("job_id", required=False)
@click.option("--running-only", is_flag=True, help="Only active jobs.")
@click.option("--limit", type=click.IntRange(min=1), default=50, help="At most this many jobs.")
@json_option
@command
def monitor(out: Output, job_id: str | None, running_only: bool, limit: int) -> int:
    """Full-screen live dashboard of the cluster (nodes, pools, jobs, recent events); with a job id,
    the live view of that job."""
    if job_id:
        return run_with(lambda b: _job(out, b, job_id))
    if out.json:
        return run_with(lambda b: _cluster_json(out, b, running_only, limit))
    return run_with(lambda b: _show(out, ClusterView(b, running_only, limit)))


@click.command("monitor")
@click.argument("job_id")
@json_option
@command
def job_monitor(out: Output, job_id: str) -> int:
    """Live view of one job: agents (status, mailbox depth, processed messages) and the event tail."""
    return run_with(lambda b: _job(out, b, job_id))
