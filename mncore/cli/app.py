"""The ``mn`` command tree."""

from __future__ import annotations

import click

from .. import __version__
from ._group import SuggestingGroup
from .bundle import bundle
from .job import events, job
from .monitor import monitor
from .node import node
from .resource import resource
from .run import run, validate
from .server import server

BANNER = f"MirrorNeuron {__version__} — message-driven multi-agent workflows"


@click.group(cls=SuggestingGroup, invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="mn", message="mn %(version)s")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """MirrorNeuron command line."""
    if ctx.invoked_subcommand is None:
        click.echo(BANNER)
        click.echo(ctx.get_help())


cli.add_command(validate)
cli.add_command(run)
cli.add_command(job)
cli.add_command(server)
cli.add_command(bundle)
cli.add_command(node)
cli.add_command(resource)
cli.add_command(monitor)
cli.add_command(events, "events")
