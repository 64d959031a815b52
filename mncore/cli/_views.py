"""Human renderings shared by commands and the monitors: event lines, agent tables, progress counts."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich.table import Table
from rich.text import Text

__all__ = ["STATUS_STYLE", "agents_table", "event_line", "progress_counts", "status_text"]

STATUS_STYLE = {
    "completed": "green",
    "running": "cyan",
    "ready": "dim",
    "busy": "cyan",
    "queued": "yellow",
    "pending": "yellow",
    "paused": "magenta",
    "failed": "bold red",
    "error": "bold red",
    "cancelled": "red",
}


def status_text(status: Any) -> Text:
    text = str(status or "")
    return Text(text, style=STATUS_STYLE.get(text, ""))


def event_line(event: dict[str, Any]) -> str:
    """``<timestamp> <type> [agent]``."""
    agent = f" {event['agent_id']}" if event.get("agent_id") else ""
    return f"{event.get('timestamp', '')} {event.get('type')}{agent}"


def agents_table(agents: Iterable[dict[str, Any]], title: str | None = None) -> Table:
    """Agent summaries: id, type, status, mailbox depth, processed messages, node, last error."""
    table = Table(title=title, expand=True, show_edge=False)
    for name, justify in (
        ("Agent", "left"),
        ("Type", "left"),
        ("Status", "left"),
        ("Mailbox", "right"),
        ("Processed", "right"),
        ("Node", "left"),
        ("Last error", "left"),
    ):
        table.add_column(name, justify=justify, overflow="ellipsis", no_wrap=True)  # type: ignore[arg-type]
    for agent in agents:
        error = agent.get("last_error")
        table.add_row(
            str(agent.get("agent_id")),
            str(agent.get("agent_type") or ""),
            status_text(agent.get("status")),
            str(agent.get("mailbox_depth", 0)),
            str(agent.get("processed_messages", 0)),
            str(agent.get("assigned_node") or ""),
            "" if error in (None, "") else str(error)[:60],
        )
    return table


def progress_counts(agents: list[dict[str, Any]]) -> tuple[int, int, int]:
    """``(done, running, failed)`` over agent summaries, for progress bars.

    An executor is done once it has a result; another agent once it handled messages and its
    mailbox is empty. Running = working on something now.
    """
    done = failed = running = 0
    for agent in agents:
        status = agent.get("status")
        if status == "error":
            failed += 1
        elif status == "completed" or (
            agent.get("agent_type") != "executor" and agent.get("processed_messages") and not agent.get("mailbox_depth")
        ):
            done += 1
        elif status in ("running", "queued", "busy") and (
            agent.get("processed_messages") or agent.get("mailbox_depth")
        ):
            running += 1
    return done, running, failed
