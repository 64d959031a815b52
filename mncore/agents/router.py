"""``router``: forwards the incoming body, optionally renaming the type (manifest.md §11.1)."""

from __future__ import annotations

from typing import Any

from ..message import Message
from .base import Agent, HandleResult


class RouterAgent(Agent):
    """Forwards every message along its edges; counts ``forwarded``; never completes the job."""

    def setup(self, node: dict[str, Any]) -> None:
        emit_type = (node.get("config") or {}).get("emit_type")
        self.emit_type = emit_type if isinstance(emit_type, str) and emit_type else None

    def init(self, node: dict[str, Any]) -> Any:
        return {"forwarded": 0}

    def handle_message(self, message: Message, state: Any, context: dict[str, Any]) -> HandleResult:
        state["forwarded"] = state.get("forwarded", 0) + 1
        # class, headers, artifacts, stream, content type/encoding are inherited by derivation
        return state, [("emit", self.emit_type or message.type, message.body)]

    def restore_state(self, data: Any) -> Any:
        return data if isinstance(data, dict) else {"forwarded": 0}
