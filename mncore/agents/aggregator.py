"""``aggregator``: collects bodies; emits and/or completes after N or on first message (§11.2)."""

from __future__ import annotations

from typing import Any

from ..message import Message
from ..templates import should_complete
from .base import Agent, HandleResult

RESULT_HEADERS = {"schema_ref": "com.mirrorneuron.aggregator.result", "schema_version": "1.0.0"}


class AggregatorAgent(Agent):
    """Fan-in: de-duplicates by ``body.agent_id`` (replays), completes by count or first message."""

    def setup(self, node: dict[str, Any]) -> None:
        config = node.get("config") or {}
        self.complete_on_message = bool(config.get("complete_on_message", False))
        self.complete_after = config.get("complete_after")
        output_type = config.get("output_message_type")
        self.output_message_type = output_type if isinstance(output_type, str) and output_type else None
        self.complete_job = bool(config.get("complete_job", self.output_message_type is None))

    def init(self, node: dict[str, Any]) -> Any:
        return {"messages": [], "count": 0, "seen_agent_ids": []}

    def handle_message(self, message: Message, state: Any, context: dict[str, Any]) -> HandleResult:
        body = message.body
        seen = state.setdefault("seen_agent_ids", [])
        if isinstance(body, dict) and "agent_id" in body:
            if body["agent_id"] in seen:
                return state, [("event", "aggregator_duplicate_ignored", {"agent_id": body["agent_id"]})]
            seen.append(body["agent_id"])
        state["messages"].append(body)
        state["count"] = count = len(state["messages"])
        actions: list[tuple[Any, ...]] = [("event", "aggregator_received", {"count": count})]
        if should_complete(count, self.complete_on_message, self.complete_after):
            result = {"messages": state["messages"], "count": count, "last_message": body}
            if self.output_message_type:
                opts = {"class": "event", "headers": RESULT_HEADERS}
                actions.append(("emit", self.output_message_type, result, opts))
            if self.complete_job:
                actions.append(("complete_job", result))
        return state, actions

    def restore_state(self, data: Any) -> Any:
        if not isinstance(data, dict):
            return {"messages": [], "count": 0, "seen_agent_ids": []}
        data.setdefault("messages", [])
        data.setdefault("seen_agent_ids", [])
        data["count"] = len(data["messages"])
        return data
