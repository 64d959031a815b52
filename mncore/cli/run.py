"""``mn validate`` and ``mn run`` (embedded: the job runs in this process on the local store)."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import click
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from .. import _loop
from ..bundle import load_bundle
from ..errors import WaitTimeoutError
from ..monitor import agent_summary
from ..runtime import Runtime
from ._common import command, configure_logging, json_option, settings
from ._output import EXIT_FAILED, EXIT_INTERRUPTED, CliError, Output


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
@click.option("--timeout", type=float, default=None, help="Seconds to wait; the embedded job is cancelled after it.")
def run(bundle: str, as_json: bool, timeout: float | None) -> int:
    """Run a job bundle to completion and print its result."""
    return _run(bundle, as_json=as_json, timeout=timeout)


@command
def _run(out: Output, bundle: str, timeout: float | None) -> int:
    configure_logging("cli")
    loaded = load_bundle(bundle)  # validation errors before anything starts
    try:
        record = _loop.run(_run_embedded(out, loaded, timeout))
    except KeyboardInterrupt:
        out.err.print("interrupted: the embedded job was cancelled")
        return EXIT_INTERRUPTED
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


async def _run_embedded(out: Output, bundle: Any, timeout: float | None) -> dict[str, Any]:
    async with Runtime(settings()) as rt:
        job_id = await rt.submit(bundle)
        waiter = asyncio.ensure_future(rt.wait_for_job(job_id, timeout))
        try:
            if out.json:
                return await waiter
            return await _follow(out, rt, job_id, waiter)
        except WaitTimeoutError:
            await rt.cancel(job_id)
            raise CliError(
                f"timed out after {timeout} s; job {job_id} was cancelled", code="MN_COMMAND_FAILED"
            ) from None
        except asyncio.CancelledError:
            await rt.cancel(job_id)
            raise KeyboardInterrupt from None


async def _follow(out: Output, rt: Runtime, job_id: str, waiter: asyncio.Future[Any]) -> dict[str, Any]:
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
        console=out.err,
        transient=True,
    )
    task = progress.add_task(job_id, total=None, detail="starting")
    with Live(progress, console=out.err, refresh_per_second=8, transient=True):
        while not waiter.done():
            agents = [agent_summary(a) for a in await rt.inspect_agents(job_id)]
            done = sum(
                1
                for a in agents
                if a["status"] == "completed"
                or (a["agent_type"] != "executor" and a["processed_messages"] and not a["mailbox_depth"])
            )
            failed = sum(1 for a in agents if a["status"] == "error")
            running = sum(1 for a in agents if a["status"] in ("running", "queued", "busy") and a["processed_messages"])
            detail = f"{done} done · {running} running · {failed} failed"
            progress.update(task, total=len(agents) or None, completed=done, detail=detail)
            await asyncio.wait([waiter], timeout=0.25)
    return await waiter
