"""``mn job ...``: list, inspect, status, events, agents, cancel, pause, resume, send, cleanup."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click

from .. import _loop
from .._util import loads
from ..runtime import Runtime
from ._common import command, json_option, settings
from ._group import SuggestingGroup
from ._output import CliError, Output

T = TypeVar("T")


def _local(call: Callable[[Runtime], Awaitable[T]]) -> T:
    async def go() -> T:
        async with Runtime(settings()) as rt:
            return await call(rt)

    return _loop.run(go())


@click.group("job", cls=SuggestingGroup)
def job() -> None:
    """Inspect and control jobs."""


@job.command("list")
@click.option("--running-only", is_flag=True, help="Only active jobs.")
@click.option("--limit", type=click.IntRange(min=1), default=None)
@click.option("--all", "include_all", is_flag=True, default=True, hidden=True)
@json_option
@command
def list_(out: Output, running_only: bool, limit: int | None, include_all: bool) -> int:
    """List jobs, newest first."""
    jobs = _local(lambda rt: rt.list_jobs(limit=limit, include_terminal=not running_only))
    rows = [[j["job_id"], j["graph_id"], j["status"], j["recovery_policy"], j["submitted_at"]] for j in jobs]
    out.data(jobs, out.table(None, ["Job ID", "Graph ID", "Status", "Recovery", "Submitted At"], rows))
    return 0


@job.command("inspect")
@click.argument("job_id")
@json_option
@command
def inspect_(out: Output, job_id: str) -> int:
    """Print the job record."""
    out.data(_local(lambda rt: rt.inspect_job(job_id)))
    return 0


@job.command("status")
@click.argument("job_id")
@json_option
@command
def status(out: Output, job_id: str) -> int:
    """Print job details (summary, agents, recent events)."""
    out.data(_local(lambda rt: rt.job_details(job_id)))
    return 0


@job.command("agents")
@click.argument("job_id")
@json_option
@command
def agents(out: Output, job_id: str) -> int:
    """Agent table: status, mailbox depth, processed messages."""
    details = _local(lambda rt: rt.job_details(job_id, 0))
    rows = [
        [a["agent_id"], a["agent_type"], a["status"], a["mailbox_depth"], a["processed_messages"]]
        for a in details["agents"]
    ]
    out.data(details["agents"], out.table(job_id, ["Agent", "Type", "Status", "Mailbox", "Processed"], rows))
    return 0


@job.command("events")
@click.argument("job_id")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Only the last N events.")
@json_option
@command
def events(out: Output, job_id: str, limit: int | None) -> int:
    """Print the job's events, oldest first."""
    data = _local(lambda rt: rt.events(job_id, -limit if limit else 0))

    def human() -> None:
        for ev in data:
            who = f" {ev['agent_id']}" if ev.get("agent_id") else ""
            out.console.print(f"{ev.get('timestamp')} {ev.get('type')}{who}", markup=False)

    out.data(data, human)
    return 0


def _control(verb: str, past: str) -> Callable[..., int]:
    @job.command(verb)
    @click.argument("job_id")
    @json_option
    @command
    def control(out: Output, job_id: str) -> int:
        result = _local(lambda rt: getattr(rt, verb)(job_id))
        out.data({"job_id": job_id, "status": result}, f"Job {past} successful. ({job_id}: {result})")
        return 0

    control.__doc__ = f"{verb.capitalize()} a job."
    return control


_control("cancel", "cancel")
_control("pause", "pause")
_control("resume", "resume")


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
        raise CliError("message must be valid JSON", code="MN_USAGE_ERROR", exit_code=2) from None
    message: Any = body if isinstance(body, dict) else {"body": body}
    if msg_type:
        message = {**message, "type": msg_type}
    if msg_class:
        message = {**message, "class": msg_class}
    result = _local(lambda rt: rt.send_message(job_id, agent_id, message))
    out.data({"job_id": job_id, "agent_id": agent_id, "status": result}, "Job send successful.")
    return 0


@job.command("cleanup")
@click.option("--all", "everything", is_flag=True, help="Also cancel and delete active jobs.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option
@command
def cleanup(out: Output, everything: bool, yes: bool) -> int:
    """Delete terminal job records (with --all, every job)."""
    if not yes and not out.json and not click.confirm("Clear all terminal job records?", default=False):
        return 1
    result = _local(lambda rt: rt.cleanup_jobs(all=everything))
    out.data(result, f"Job cleanup successful. Deleted {result['deleted_count']} job(s).")
    return 0
