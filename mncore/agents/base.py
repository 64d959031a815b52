"""The agent contract (messages-and-routing.md §6) and the action tuples agents return.

Every agent type — builtin or a user's ``module`` delegate — implements :class:`Agent`.
``handle_message`` returns ``(state, actions)``; it may also be a coroutine function, in which
case the runtime awaits it while the agent's mailbox keeps queueing (one message at a time).

Actions are plain tuples, executed in order after ``handle_message`` returns:

=====================================================  =============================================
``("emit", type, body[, opts])``                        edge-routed fan-out
``("emit_to", node_id, type, body[, opts])``            direct delivery, edges ignored
``("emit_message", message)``                           deliver a full message to ``envelope.to``
``("event", type, payload)``                            publish an agent event
``("checkpoint", data)``                                persist now with ``data`` as recovery state
``("complete_job", result)`` / ``("complete_run", r)``  complete the job
``("complete_step", result)``                           recognised; no effect without a workflow ledger
=====================================================  =============================================
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ..execution.backend import ExecutionService
    from ..message import Message

Action = tuple[Any, ...]
HandleResult = tuple[Any, list[Action]]

__all__ = ["Action", "Agent", "AgentFailure", "AgentHost", "HandleResult"]


class AgentFailure(Exception):
    """Raised from ``handle_message`` (or a delegate's ``("error", reason, state)``): the agent fails.

    ``reason`` is the error text or an error map (an executor's final attempt result).
    """

    def __init__(self, reason: Any) -> None:
        super().__init__(reason if isinstance(reason, str) else repr(reason))
        self.reason = reason


class AgentHost(Protocol):
    """What the runtime offers builtin agents beyond the spec context (events mid-handling, services)."""

    job_id: str
    agent_id: str
    node_name: str
    execution: ExecutionService

    def event(self, event_type: str, payload: dict[str, Any]) -> None: ...

    def runtime_event(self, event_type: str, fields: dict[str, Any]) -> None: ...


class Agent:
    """Base class with the contract's optional callbacks defaulted (identity / no actions)."""

    #: set by the runtime for builtin agents that need to publish events while a message runs
    host: AgentHost | None = None
    #: a coroutine ``handle_message`` may change its state before it finishes, so the runtime keeps
    #: the state as of the message's start for the snapshot; agents that change state only at the
    #: very end (no await after the change) set this False and save that copy
    mutates_state_while_awaiting = True

    def setup(self, node: dict[str, Any]) -> None:
        """Read the node's config; called once before ``init`` or ``restore_state`` (not in the spec contract)."""

    def init(self, node: dict[str, Any]) -> Any:
        return {}

    def handle_message(
        self, message: Message, state: Any, context: dict[str, Any]
    ) -> HandleResult | Awaitable[HandleResult]:
        raise NotImplementedError

    def recover(self, state: Any, context: dict[str, Any]) -> HandleResult:
        return state, []

    def snapshot_state(self, state: Any) -> Any:
        return state

    def restore_state(self, data: Any) -> Any:
        return data

    def inspect_state(self, state: Any) -> Any:
        return state
