"""Module-agent delegates used by the engine tests (imported by dotted path ``mn_test_delegates.X``)."""

from __future__ import annotations

import asyncio
from typing import Any

CALLS: list[tuple[str, int, Any]] = []  # (delegate, invocation, body)
GATE: dict[str, asyncio.Event] = {}


class Echo:
    def init(self, node: dict[str, Any]) -> dict[str, Any]:
        return {"seen": 0}

    def handle_message(self, message: Any, state: dict[str, Any], context: dict[str, Any]) -> Any:
        state["seen"] += 1
        CALLS.append(("echo", context["invocation"], message.body))
        return state, [("event", "echo_seen", {"seen": state["seen"]}), ("emit", "echoed", message.body)]


class EmitTo:
    def init(self, node: dict[str, Any]) -> dict[str, Any]:
        return {}

    def handle_message(self, message: Any, state: Any, context: dict[str, Any]) -> Any:
        body = message["body"]
        return state, [("emit_to", body["target"], "direct", {1: "int key", "v": body.get("v")})]


class EmitMessage:
    def init(self, node: dict[str, Any]) -> dict[str, Any]:
        return {}

    def handle_message(self, message: Any, state: Any, context: dict[str, Any]) -> Any:
        target = message.body["target"]
        return state, [("emit_message", {"envelope": {"to": target, "type": "full"}, "body": {"x": 1}})]


class Slow:
    """Async delegate that waits on GATE[name] before finishing; records each invocation."""

    def init(self, node: dict[str, Any]) -> dict[str, Any]:
        return {"done": 0}

    async def handle_message(self, message: Any, state: dict[str, Any], context: dict[str, Any]) -> Any:
        CALLS.append(("slow", context["invocation"], message.body))
        gate = GATE.setdefault("slow", asyncio.Event())
        await gate.wait()
        state["done"] += 1
        return state, [("emit", "slow_done", {"done": state["done"], "body": message.body})]


class Fail:
    def init(self, node: dict[str, Any]) -> dict[str, Any]:
        return {}

    def handle_message(self, message: Any, state: Any, context: dict[str, Any]) -> Any:
        raise ValueError("boom: bad input")


class ErrorTuple:
    def init(self, node: dict[str, Any]) -> dict[str, Any]:
        return {}

    def handle_message(self, message: Any, state: Any, context: dict[str, Any]) -> Any:
        return ("error", {"code": "custom.failure", "error": "custom failure"}, state)


class CompleteRun:
    def init(self, node: dict[str, Any]) -> dict[str, Any]:
        return {}

    def handle_message(self, message: Any, state: Any, context: dict[str, Any]) -> Any:
        return state, [("complete_run", {"answer": 42}), ("complete_job", {"ignored": True})]


class Checkpoint:
    def init(self, node: dict[str, Any]) -> dict[str, Any]:
        return {"n": 0}

    def handle_message(self, message: Any, state: dict[str, Any], context: dict[str, Any]) -> Any:
        state["n"] += 1
        return state, [("checkpoint", {"n": state["n"], "marker": "saved"})]

    def restore_state(self, data: Any) -> Any:
        return data


class BadInit:
    def init(self, node: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("cannot start")

    def handle_message(self, message: Any, state: Any, context: dict[str, Any]) -> Any:
        return state, []
