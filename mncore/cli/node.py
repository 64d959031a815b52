"""``mn node list``: the nodes of the cluster with their executor pool stats and hardware."""

from __future__ import annotations

import click

from ._backend import run_with
from ._common import command, json_option
from ._group import SuggestingGroup
from ._output import Output

__all__ = ["node"]


@click.group("node", cls=SuggestingGroup)
def node() -> None:
    """Cluster nodes."""


@node.command("list")
@json_option
@command
def list_(out: Output) -> int:
    """Nodes with executor pools (capacity, in use, queued) and hardware."""
    nodes = run_with(lambda b: b.summary()).get("nodes") or []
    rows = []
    for item in nodes:
        pools = item.get("executor_pools") or {}
        pool_text = ", ".join(
            f"{name}: {p.get('in_use', 0)}/{p.get('capacity', 0)} in use, {p.get('queued', 0)} queued"
            for name, p in sorted(pools.items())
        )
        hardware = item.get("hardware") or {}
        cpus = (hardware.get("cpu") or {}).get("logical_processors")
        memory = (hardware.get("memory") or {}).get("total_mb")
        rows.append([item.get("name"), "yes" if item.get("self?") else "", pool_text, cpus, memory])
    out.data(nodes, out.table(None, ["Node", "Self", "Executor pools", "CPUs", "Memory MB"], rows))
    return 0
