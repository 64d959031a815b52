"""``mn validate`` and ``mn run``: on the server at ``MN_GRPC_TARGET`` when one answers, else embedded.

Embedded, the job runs in this process on the local store; Ctrl+C or an expired ``--timeout``
cancels it. On a server, the job is submitted and followed from its event stream; Ctrl+C or an
expired ``--timeout`` only detaches (the job keeps running). ``--detach`` needs a server.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

import click
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from .. import _loop
from ..bundle import Bundle, load_bundle
from ..errors import WaitTimeoutError
from ..live import TERMINAL_EVENTS
from ..monitor import agent_summary
from ..runtime import Runtime
from ..sdk import AsyncClient
from ._backend import probe
from ._common import command, configure_logging, json_option, settings
from ._output import EXIT_FAILED, EXIT_USAGE, CliError, Output
from ._views import progress_counts

__all__ = ["run", "validate"]


@click.command("validate")
@click.argument("bundle")
@json_option
@command
def validate(out: Output, bundle: str) -> int:
    """Validate a job bundle folder and print every error."""
    loaded = load_bundle(bundle)
    manifest = loaded.manifest
    data = loaded.to_dict()

    def human() -> None:
        out.console.print(f"✓ Job bundle at '{os.path.abspath(bundle)}' is valid.", markup=False)
        out.console.print(f"  Job Name: {manifest.get('job_name')}", markup=False)
        out.console.print(f"  Graph ID: {manifest.get('graph_id')}", markup=False)
        out.console.print(f"  Nodes:    {len(manifest.get('nodes') or [])}", markup=False)

    out.data(data, human)
    return 0


@click.command("run")
@click.argument("bundle")
@json_option
@click.option("--timeout", type=float, default=None, help="Seconds to wait (embedded: the job is then cancelled).")
@click.option("--detach", "--no-await", "detach", is_flag=True, help="Submit to the server and return at once.")
@click.option("--follow", is_flag=True, help="Follow the job until it ends (the default unless --detach).")
def run(bundle: str, as_json: bool, timeout: float | None, detach: bool, follow: bool) -> int:
    """Run a job bundle to completion and print its result (on the server when one answers)."""
    return _run(bundle, as_json=as_json, timeout=timeout, detach=detach, follow=follow)


@command
def _run(out: Output, bundle: str, timeout: float | None, detach: bool, follow: bool) -> int:
    configure_logging("cli")
    if detach and follow:
        raise CliError("--detach and --follow cannot be combined", code="MN_USAGE_ERROR", exit_code=EXIT_USAGE)
    loaded = load_bundle(bundle)  # validation errors before anything starts
    record = _loop.run(_run_somewhere(out, loaded, timeout, detach))
    if record is None:
        return 0
    status = record.get("status")
    result = record.get("result")
    if out.json:
        out.data(record)
    elif status == "completed":
        out.console.print(f"[bold green]Job {record['job_id']} completed[/]")
        out.pretty((result or {}).get("output"))
    else:
        reason = record.get("reason") or (result or {}).get("reason") or (result or {}).get("error")
        out.err.print(f"[bold red]Job {record['job_id']} {status}[/]: {reason}")
    return 0 if status == "completed" else EXIT_FAILED


async def _run_somewhere(out: Output, bundle: Bundle, timeout: float | None, detach: bool) -> dict[str, Any] | None:
    client = await probe(settings())
    if client is None:
        if detach:
            raise CliError(
                "--detach needs a running server: none answered at MN_GRPC_TARGET",
                code="MN_USAGE_ERROR",
                hint="start one with `mn server`, or drop --detach to run the bundle in this process",
                exit_code=EXIT_USAGE,
            )
        return await _run_embedded(out, bundle, timeout)
    async with client:
        return await _run_remote(out, client, bundle, timeout, detach)


# -- on a server ---------------------------------------------------------------------------------


async def _run_remote(
    out: Output, client: AsyncClient, bundle: Bundle, timeout: float | None, detach: bool
) -> dict[str, Any] | None:
    assert bundle.root_path is not None
    job_id = await client.submit_bundle(bundle.root_path)
    if detach:
        human = f"Job submit successful. {job_id} (on {client.target})\nNext: mn job monitor {job_id}"
        out.data({"job_id": job_id, "status": "pending", "target": client.target}, human)
        return None
    try:
        return await asyncio.wait_for(_follow_remote(out, client, job_id), timeout)
    except TimeoutError:
        raise CliError(
            f"timed out after {timeout} s; job {job_id} keeps running on the server",
            hint=f"mn job monitor {job_id}",
        ) from None
    except asyncio.CancelledError:
        out.err.print(f"interrupted: job {job_id} keeps running on the server (mn job monitor {job_id})")
        raise KeyboardInterrupt from None


async def _follow_remote(out: Output, client: AsyncClient, job_id: str) -> dict[str, Any]:
    async def agents() -> list[dict[str, Any]]:
        return list((await client.get_job(job_id)).get("agents") or [])

    with _ProgressBar(out, job_id) as bar:
        last = 0.0
        async for event in client.stream_events(job_id, follow=True, heartbeat_interval_ms=500):
            if event.get("type") in TERMINAL_EVENTS:
                break
            if bar.enabled and time.monotonic() - last > 0.2:
                bar.update(await agents())
                last = time.monotonic()
    return dict((await client.get_job(job_id))["job"])


# -- embedded ------------------------------------------------------------------------------------


async def _run_embedded(out: Output, bundle: Bundle, timeout: float | None) -> dict[str, Any]:
    async with Runtime(settings()) as rt:
        job_id = await rt.submit(bundle)
        waiter = asyncio.ensure_future(rt.wait_for_job(job_id, timeout))
        try:
            if out.json:
                return await waiter
            return await _follow_embedded(out, rt, job_id, waiter)
        except WaitTimeoutError:
            await rt.cancel(job_id)
            raise CliError(
                f"timed out after {timeout} s; job {job_id} was cancelled", code="MN_COMMAND_FAILED"
            ) from None
        except asyncio.CancelledError:
            await rt.cancel(job_id)
            out.err.print("interrupted: the embedded job was cancelled")
            raise KeyboardInterrupt from None


async def _follow_embedded(out: Output, rt: Runtime, job_id: str, waiter: asyncio.Future[Any]) -> dict[str, Any]:
    async def agents() -> list[dict[str, Any]]:
        return [agent_summary(a) for a in await rt.inspect_agents(job_id)]

    await _poll(_ProgressBar(out, job_id), agents, waiter)
    return await waiter


async def _poll(
    bar: _ProgressBar, agents: Callable[[], Awaitable[list[dict[str, Any]]]], waiter: asyncio.Future[Any]
) -> None:
    with bar:
        while not waiter.done():
            bar.update(await agents())
            await asyncio.wait([waiter], timeout=0.25)


class _ProgressBar:
    """A transient progress bar on stderr: agents done / running / failed (off with --json)."""

    def __init__(self, out: Output, job_id: str) -> None:
        self.enabled = not out.json
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            console=out.err,
            transient=True,
        )
        self.task: TaskID = self.progress.add_task(job_id, total=None, detail="starting")
        self.live = Live(self.progress, console=out.err, refresh_per_second=8, transient=True)

    def __enter__(self) -> _ProgressBar:
        if self.enabled:
            self.live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.enabled:
            self.live.__exit__(*exc)

    def update(self, agents: list[dict[str, Any]]) -> None:
        done, running, failed = progress_counts(agents)
        detail = f"{done} done · {running} running · {failed} failed"
        self.progress.update(self.task, total=len(agents) or None, completed=done, detail=detail)
