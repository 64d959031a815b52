"""``mn job ...``: submit, list, inspect, status, agents, events, result, monitor, control, cleanup.

Every command goes through :mod:`._backend`: the server at ``MN_GRPC_TARGET`` when one answers,
else the local store (where ``cancel`` of a job without a live coordinator is the forced cancel).
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import click

from .._util import dumps, loads
from ..live import HEARTBEAT
from ..monitor import ACTIVE
from ._backend import Backend, run_with
from ._common import command, json_option
from ._group import SuggestingGroup
from ._output import EXIT_USAGE, CliError, Output
from ._views import agents_table, event_line
from .monitor import job_monitor


@click.group("job", cls=SuggestingGroup)
def job() -> None:
    """Inspect and control jobs."""


job.add_command(job_monitor)


@job.command("submit")
@click.argument("bundle", type=click.Path(exists=True))
@json_option
@command
def submit(out: Output, bundle: str) -> int:
    """Submit a bundle folder (or its manifest.json) to the server; prints the job id."""
    job_id = run_with(lambda b: b.submit_bundle(os.path.abspath(bundle)))
    out.data({"job_id": job_id, "status": "pending"}, f"Job submit successful. {job_id}\nNext: mn job monitor {job_id}")
    return 0


@job.command("list")
@click.option("--running-only", is_flag=True, help="Only active jobs.")
@click.option("--limit", type=click.IntRange(min=1), default=None)
@click.option("--all", "include_all", is_flag=True, default=True, help="Include finished jobs (the default).")
@json_option
@command
def list_(out: Output, running_only: bool, limit: int | None, include_all: bool) -> int:
    """List jobs, newest first."""
    jobs = run_with(lambda b: b.list_jobs(limit, not running_only))
    rows = [[j["job_id"], j["graph_id"], j["status"], j["recovery_policy"], j["submitted_at"]] for j in jobs]
    out.data(jobs, out.table(None, ["Job ID", "Graph ID", "Status", "Recovery", "Submitted At"], rows))
    return 0


@job.command("inspect")
@click.argument("job_id")
@json_option
@command
def inspect_(out: Output, job_id: str) -> int:
    """Print the job record."""
    out.data(run_with(lambda b: b.job_details(job_id))["job"])
    return 0


@job.command("status")
@click.argument("job_id")
@json_option
@command
def status(out: Output, job_id: str) -> int:
    """Print job details (summary, agents, recent events)."""
    out.data(run_with(lambda b: b.job_details(job_id)))
    return 0


@job.command("agents")
@click.argument("job_id")
@json_option
@command
def agents(out: Output, job_id: str) -> int:
    """Agent table: status, mailbox depth, processed messages."""
    details = run_with(lambda b: b.job_details(job_id))
    out.data(details["agents"], agents_table(details["agents"], title=job_id))
    return 0


@job.command("events")
@click.argument("job_id")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new events until the job ends.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Only the last N stored events.")
@json_option
@command
def events(out: Output, job_id: str, follow: bool, limit: int | None) -> int:
    """Print the job's events, oldest first (NDJSON stream with --follow --json)."""
    if follow:
        return run_with(lambda b: _follow_events(out, b, job_id, limit or 0))
    data = run_with(lambda b: b.events(job_id, limit))

    def human() -> None:
        for event in data:
            out.console.print(event_line(event), markup=False)

    out.data(data, human)
    return 0


async def _follow_events(out: Output, backend: Backend, job_id: str, limit: int) -> int:
    stream: AsyncIterator[dict[str, Any]] = backend.follow(job_id, 5.0, limit)
    async for event in stream:
        if event.get("type") == HEARTBEAT:
            continue
        if out.json:
            out.stream("event", job_id=job_id, event=event)
        else:
            out.console.print(event_line(event), markup=False)
    if out.json:
        out.stream("complete", job_id=job_id)
    return 0


@job.command("result")
@click.argument("job_id")
@click.option("--output", "-o", "output_dir", type=click.Path(file_okay=False), default=None, help="Folder to write.")
@json_option
@command
def result(out: Output, job_id: str, output_dir: str | None) -> int:
    """Save the job's result and events as JSON files; prints their paths."""

    async def fetch(backend: Backend) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        return await backend.job_details(job_id), await backend.events(job_id, None)

    details, history = run_with(fetch)
    folder = Path(output_dir or f"mn-result-{job_id}")
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"result": folder / "result.json", "events": folder / "events.json"}
    paths["result"].write_bytes(dumps(details["job"].get("result"), indent=True) + b"\n")
    paths["events"].write_bytes(dumps(history, indent=True) + b"\n")
    data = {"job_id": job_id, "status": details["job"].get("status"), **{k: str(v) for k, v in paths.items()}}
    out.data(data, f"Job result saved.\n  result: {paths['result']}\n  events: {paths['events']}")
    return 0


def _control(verb: str, past: str) -> Callable[..., int]:
    @json_option
    @command
    def control(out: Output, job_id: str) -> int:
        result = run_with(lambda b: b.control(verb, job_id))
        out.data({"job_id": job_id, "status": result}, f"Job {past} successful. ({job_id}: {result})")
        return 0

    control.__doc__ = f"{verb.capitalize()} a job."
    return control


job.command("pause")(click.argument("job_id")(_control("pause", "pause")))
job.command("resume")(click.argument("job_id")(_control("resume", "resume")))


@job.command("cancel")
@click.argument("job_id", required=False)
@json_option
@command
def cancel(out: Output, job_id: str | None) -> int:
    """Cancel a job (without an id: pick one of the active jobs)."""

    async def go(backend: Backend) -> dict[str, Any] | None:
        chosen = job_id or await _pick_active(out, backend)
        if chosen is None:
            return None
        return {"job_id": chosen, "status": await backend.control("cancel", chosen)}

    done = run_with(go)
    if done is None:
        out.data({"job_id": None, "status": None}, "no active jobs")
    else:
        out.data(done, f"Job cancel successful. ({done['job_id']}: {done['status']})")
    return 0


async def _pick_active(out: Output, backend: Backend) -> str | None:
    if out.json or not sys.stdin.isatty():
        raise CliError("a job id is required", code="MN_USAGE_ERROR", hint="mn job cancel JOB_ID", exit_code=EXIT_USAGE)
    active = await backend.list_jobs(None, include_terminal=False)
    if not active:
        return None
    for number, item in enumerate(active, 1):
        out.console.print(f"  {number}. {item['job_id']}  {item['status']}", markup=False, highlight=False)
    picked = click.prompt("Cancel which job?", type=click.IntRange(1, len(active)))
    return str(active[picked - 1]["job_id"])


@job.command("cancel-all")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option
@command
def cancel_all(out: Output, yes: bool) -> int:
    """Cancel every active job."""

    async def go(backend: Backend) -> list[dict[str, Any]] | None:
        active = [j for j in await backend.list_jobs(None, include_terminal=False) if j["status"] in ACTIVE]
        if active and not yes and not out.json and not click.confirm(f"Cancel all {len(active)} active jobs?"):
            return None
        return [{"job_id": j["job_id"], "status": await backend.control("cancel", j["job_id"])} for j in active]

    done = run_with(go)
    if done is None:
        return 1
    out.data(done, "no active jobs" if not done else f"Job cancel-all successful. Cancelled {len(done)} job(s).")
    return 0


@job.command("send")
@click.argument("job_id")
@click.argument("agent_id")
@click.argument("message_json")
@click.option("--type", "msg_type", default=None, help="Message type (default: command).")
@click.option("--class", "msg_class", default=None, help="Message class (default: command).")
@json_option
@command
def send(
    out: Output, job_id: str, agent_id: str, message_json: str, msg_type: str | None, msg_class: str | None
) -> int:
    """Send a message (JSON) to an agent of a running job."""
    try:
        body: Any = loads(message_json)
    except ValueError:
        raise CliError("message must be valid JSON", code="MN_USAGE_ERROR", exit_code=EXIT_USAGE) from None
    message: Any = body if isinstance(body, dict) else {"body": body}
    if msg_type:
        message = {**message, "type": msg_type}
    if msg_class:
        message = {**message, "class": msg_class}
    result = run_with(lambda b: b.send_message(job_id, agent_id, message))
    out.data({"job_id": job_id, "agent_id": agent_id, "status": result}, "Job send successful.")
    return 0


@job.command("cleanup")
@click.option("--all", "everything", is_flag=True, help="Also cancel and delete active jobs.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option
@command
def cleanup(out: Output, everything: bool, yes: bool) -> int:
    """Delete terminal job records (with --all, every job; active ones are cancelled first)."""
    if not yes and not out.json and not click.confirm("Clear all terminal job records?", default=False):
        return 1
    result = run_with(lambda b: b.cleanup(everything))
    out.data(result, f"Job cleanup successful. Deleted {result['deleted_count']} job(s).")
    return 0


job.add_command(cleanup, "clear")
