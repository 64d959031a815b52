"""``mn resource get|list|set``: the resource report and the usage limits (operations.md §3)."""

from __future__ import annotations

from typing import Any

import click

from ._backend import run_with
from ._common import command, json_option
from ._group import SuggestingGroup
from ._output import EXIT_USAGE, CliError, Output

__all__ = ["resource"]

LEVELS = click.Choice(["25", "50", "75", "100"])
KINDS = ("cpu", "gpu", "memory", "disk")


@click.group("resource", cls=SuggestingGroup)
def resource() -> None:
    """Resource totals, usable amounts and limits."""


def _human(out: Output, report: dict[str, Any], headline: str | None = None) -> Any:
    limits = report.get("limits") or {}
    usable = report.get("usable") or {}
    totals = report.get("totals") or {}
    rows = [[key, f"{limits.get(key, '')}%"] for key in KINDS]
    table = out.table(
        f"Resources ({report.get('mode', '')}, {report.get('node_count', '')} node(s))", ["Limit", "%"], rows
    )
    amounts = [[key, totals.get(key), usable.get(key)] for key in sorted(set(totals) | set(usable))]

    def show() -> None:
        if headline:
            out.console.print(headline, markup=False)
        out.console.print(table)
        out.console.print(out.table(None, ["Amount", "Total", "Usable"], amounts))

    return show


@resource.command("get")
@json_option
@command
def get(out: Output) -> int:
    """Print the resource report."""
    report = run_with(lambda b: b.resource())
    out.data(report, _human(out, report))
    return 0


resource.add_command(get, "list")


@resource.command("set")
@click.option("--cpu", type=LEVELS, default=None, help="Percent of CPU usable by executors.")
@click.option("--gpu", type=LEVELS, default=None, help="Percent of GPUs usable.")
@click.option("--memory", type=LEVELS, default=None, help="Percent of memory usable.")
@click.option("--disk", type=LEVELS, default=None, help="Percent of disk usable.")
@json_option
@command
def set_(out: Output, cpu: str | None, gpu: str | None, memory: str | None, disk: str | None) -> int:
    """Set usage limits (25, 50, 75 or 100 percent); prints the updated report."""
    given = {k: int(v) for k, v in {"cpu": cpu, "gpu": gpu, "memory": memory, "disk": disk}.items() if v}
    if not given:
        raise CliError(
            "at least one of --cpu, --gpu, --memory, --disk is required", code="MN_USAGE_ERROR", exit_code=EXIT_USAGE
        )
    report = run_with(lambda b: b.set_resource(given))
    out.data(report, _human(out, report, "Resource set successful."))
    return 0
