"""What the live monitors show: their state and pure rich renderings of it (no I/O here).

:class:`ClusterState` → :func:`render_cluster` (nodes with pool stats, selectable jobs, recent
events); :class:`JobState` → :func:`render_job` (agents with status, mailbox depth and processed
messages, and the event tail). Both end with a one-line footer naming the keys.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from rich.console import RenderableType
from rich.layout import Layout
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from ._views import agents_table, progress_counts, status_text

__all__ = ["ClusterState", "JobState", "render_cluster", "render_job"]

EVENT_TAIL = 200
CLUSTER_KEYS = "↑/↓ j/k select · enter/o open · c cancel · q quit"
JOB_KEYS = "c cancel · p pause/resume · q quit"


@dataclass
class ClusterState:
    where: str
    nodes: list[dict[str, Any]] = field(default_factory=list)
    jobs: list[dict[str, Any]] = field(default_factory=list)
    events: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=EVENT_TAIL))
    selected: int = 0
    message: str = ""
    confirm: str | None = None  # job id awaiting y/n for cancel

    def selected_job(self) -> dict[str, Any] | None:
        if not self.jobs:
            return None
        self.selected = max(0, min(self.selected, len(self.jobs) - 1))
        return self.jobs[self.selected]


@dataclass
class JobState:
    job_id: str
    where: str
    details: dict[str, Any] | None = None
    events: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=EVENT_TAIL))
    message: str = ""
    confirm: bool = False
    nested: bool = False  # opened from the cluster view: escape goes back

    @property
    def status(self) -> str:
        return str(((self.details or {}).get("job") or {}).get("status") or "…")


def _header(text: str) -> Text:
    return Text.assemble((" MirrorNeuron ", "bold white on blue"), " ", text, " ", (time.strftime("%H:%M:%S"), "dim"))


def _footer(keys: str, message: str) -> Text:
    return Text.assemble((f" {keys} ", "reverse"), "  ", (message, "bold yellow"))


def _pools(node: dict[str, Any]) -> str:
    pools = node.get("executor_pools") or {}
    return "  ".join(
        f"{name} {p.get('in_use', 0)}/{p.get('capacity', 0)} q{p.get('queued', 0)}" for name, p in sorted(pools.items())
    )


def _nodes_table(nodes: list[dict[str, Any]]) -> Table:
    table = Table(expand=True, show_edge=False)
    table.add_column("Node", ratio=1, no_wrap=True, overflow="ellipsis")
    table.add_column("Pools (in use/capacity, queued)", ratio=3, no_wrap=True, overflow="ellipsis")
    for name in ("CPUs", "Memory MB", "GPUs"):
        table.add_column(name, justify="right", no_wrap=True)
    for node in nodes:
        hardware = node.get("hardware") or {}
        cpu, memory = hardware.get("cpu") or {}, hardware.get("memory") or {}
        table.add_row(
            str(node.get("name")),
            _pools(node),
            str(cpu.get("logical_processors", "")),
            str(memory.get("total_mb", "")),
            str(len(hardware.get("gpu") or [])),
        )
    return table


def _jobs_table(state: ClusterState) -> Table:
    table = Table(expand=True, show_edge=False)
    table.add_column("", width=1)
    table.add_column("Job ID", ratio=4, min_width=20, no_wrap=True, overflow="ellipsis")
    table.add_column("Graph", ratio=2, no_wrap=True, overflow="ellipsis")
    table.add_column("Status", min_width=9, no_wrap=True)
    table.add_column("Executors", min_width=9, justify="right", no_wrap=True)
    table.add_column("Last event", ratio=3, no_wrap=True, overflow="ellipsis")
    table.add_column("Updated", ratio=2, no_wrap=True, overflow="ellipsis")
    state.selected_job()
    for index, job in enumerate(state.jobs):
        chosen = index == state.selected
        table.add_row(
            "▶" if chosen else " ",
            str(job.get("job_id")),
            str(job.get("graph_id")),
            status_text(job.get("status")),
            f"{job.get('active_executors', 0)}/{job.get('executor_count', 0)}",
            str(job.get("last_event") or ""),
            str(job.get("updated_at") or ""),
            style="reverse" if chosen else None,
        )
    return table


def _events_lines(events: deque[dict[str, Any]], height: int = 50, show_job: bool = True) -> Text:
    lines = Text()
    for event in list(events)[:height]:
        stamp = str(event.get("timestamp", ""))[11:23]
        agent = f" {event['agent_id']}" if event.get("agent_id") else ""
        job = f"  {event.get('job_id')}" if show_job else ""
        lines.append(f"{stamp} ", style="dim")
        lines.append(f"{event.get('type')}{agent}")
        lines.append(f"{job}\n", style="dim")
    return lines


def render_cluster(state: ClusterState) -> RenderableType:
    layout = Layout()
    summary = f"monitor · {state.where} · {len(state.nodes)} node(s) · {len(state.jobs)} job(s)"
    layout.split_column(
        Layout(_header(summary), name="header", size=1),
        Layout(Panel(_nodes_table(state.nodes), title="Nodes"), name="nodes", size=len(state.nodes) + 4),
        Layout(Panel(_jobs_table(state), title="Jobs"), name="jobs", ratio=2),
        Layout(Panel(_events_lines(state.events), title="Recent events"), name="events", ratio=1),
        Layout(_footer(CLUSTER_KEYS, state.message), name="footer", size=1),
    )
    return layout


def render_job(state: JobState) -> RenderableType:
    details = state.details or {}
    agents = details.get("agents") or []
    done, running, failed = progress_counts(agents)
    job = details.get("job") or {}
    head = Text.assemble(
        f"job {state.job_id} · ",
        status_text(state.status),
        f" · {job.get('graph_id', '')} · agents {len(agents)}: {done} done, {running} running, {failed} failed",
    )
    keys = JOB_KEYS + (" · esc back" if state.nested else "")
    layout = Layout()
    layout.split_column(
        Layout(_header(""), name="header", size=1),
        Layout(head, name="title", size=1),
        Layout(Panel(agents_table(agents), title="Agents"), name="agents", ratio=2),
        Layout(Panel(_events_lines(state.events, show_job=False), title="Events"), name="events", ratio=1),
        Layout(_footer(keys, state.message), name="footer", size=1),
    )
    return layout
