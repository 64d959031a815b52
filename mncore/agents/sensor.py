"""``sensor``: counts observations, re-emits each body as an event, optional completion (§11.3)."""

from __future__ import annotations

from typing import Any

from ..message import Message
from .base import Agent, HandleResult


class SensorAgent(Agent):
    def setup(self, node: dict[str, Any]) -> None:
        config = node.get("config") or {}
        output_type = config.get("output_message_type")
        self.output_message_type = output_type if isinstance(output_type, str) and output_type else "sensor_ready"
        after = config.get("complete_after", 1)
        self.complete_after = after if isinstance(after, int) and not isinstance(after, bool) else 1
        self.complete_job = bool(config.get("complete_job", False))

    def init(self, node: dict[str, Any]) -> Any:
        return {"observations": 0}

    def handle_message(self, message: Message, state: Any, context: dict[str, Any]) -> HandleResult:
        state["observations"] = count = state.get("observations", 0) + 1
        actions: list[tuple[Any, ...]] = [
            ("event", "sensor_observed", {"count": count}),
            ("emit", self.output_message_type, message.body, {"class": "event"}),
        ]
        if self.complete_job and count >= self.complete_after:
            actions.append(("complete_job", {"count": count, "last_message": message.body}))
        return state, actions

    def restore_state(self, data: Any) -> Any:
        return data if isinstance(data, dict) else {"observations": 0}
