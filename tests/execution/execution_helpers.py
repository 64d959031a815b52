"""Helpers shared by the runner tests (imported as ``execution_helpers``)."""

from __future__ import annotations

from typing import Any

from mncore.config import Settings
from mncore.execution import AttemptOutcome, RunRequest, get_runner
from mncore.message import normalize


def make_request(
    config: dict[str, Any] | None = None,
    body: Any = None,
    *,
    runner: str = "host",
    envelope: dict[str, Any] | None = None,
    **fields: Any,
) -> RunRequest:
    message = normalize({"type": "task", "body": {"n": 1} if body is None else body, **(envelope or {})})
    return RunRequest(
        job_id=fields.pop("job_id", "job-1"),
        agent_id=fields.pop("agent_id", "worker"),
        runner=runner,
        config=dict(config or {}),
        message=message.to_dict(),
        **fields,
    )


class Recorder:
    """The ``emit`` callback: records ``(event_type, payload)`` in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, event_type: str, payload: dict[str, Any]) -> None:
        self.events.append((event_type, payload))

    def of(self, event_type: str) -> list[dict[str, Any]]:
        return [p for t, p in self.events if t == event_type]


async def run_with(
    settings: Settings, runner: str, config: dict[str, Any], body: Any = None, **fields: Any
) -> tuple[AttemptOutcome, Recorder]:
    recorder = Recorder()
    request = make_request(config, body, runner=runner, **fields)
    outcome = await get_runner(runner, settings).run(request, recorder)
    return outcome, recorder


def workspaces(temp_dir: str) -> list[str]:
    """Entries of ``temp_dir`` that are workspaces (recycled spare directories excluded)."""
    import os

    return sorted(n for n in os.listdir(temp_dir) if not n.startswith("mirror_neuron_spare_"))
