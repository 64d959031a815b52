"""Template helpers (spec manifest.md §10): small pure functions ``module`` delegates may call.

Templates are utilities, not behaviours: builtin agents ignore a node's ``type``. Every function
returns new state instead of changing the given one, so a delegate that raises part-way leaves its
state untouched (at-least-once replay relies on that). States are JSON-safe; actions are the agent
action tuples of messages-and-routing.md §6.1: ``("event", type, payload)``,
``("complete_job", result)``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ._util import inspect
from .errors import ValidationError

__all__ = [
    "Action",
    "batch_init",
    "batch_push",
    "defaults",
    "map_init",
    "map_transform",
    "reduce_init",
    "reduce_collect",
    "reduce_result",
    "should_complete",
    "stream_init",
    "stream_observe",
]

Action = tuple[Any, ...]
DEFAULT_BATCH_SIZE = 10


def defaults(node: Mapping[str, Any], extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``generic``: ``{"config": node.config, "template": node.type or "generic"}`` merged with ``extra``."""
    config = node.get("config")
    result: dict[str, Any] = {
        "config": config if config is not None else {},
        "template": node.get("type") or "generic",
    }
    result.update(extra or {})
    return result


def should_complete(count: int, complete_on_message: Any, complete_after: Any) -> bool:
    """The completion rule shared by ``reduce`` and the aggregator: ``complete_on_message`` is
    ``true``, or ``complete_after`` is an integer > 0 and ``count >= complete_after``."""
    if complete_on_message is True:
        return True
    return (
        isinstance(complete_after, int)
        and not isinstance(complete_after, bool)
        and complete_after > 0
        and count >= complete_after
    )


# -- map ---------------------------------------------------------------------------------------


def map_init() -> dict[str, Any]:
    return {"processed": 0}


def map_transform(state: Mapping[str, Any], event_type: str = "map_transformed") -> tuple[dict[str, Any], list[Action]]:
    """Record one transformed record: ``processed += 1`` and an event ``{processed}``."""
    processed = int(state.get("processed", 0)) + 1
    return {**state, "processed": processed}, [("event", event_type, {"processed": processed})]


# -- reduce ------------------------------------------------------------------------------------


def reduce_init(config: Mapping[str, Any] | None = None, complete_on_message: bool = False) -> dict[str, Any]:
    return {
        "messages": [],
        "complete_on_message": complete_on_message,
        "complete_after": (config or {}).get("complete_after"),
    }


def reduce_result(state: Mapping[str, Any]) -> dict[str, Any]:
    """``{"messages", "count", "last_message"}`` (the aggregator's result shape)."""
    messages = list(state.get("messages") or [])
    return {"messages": messages, "count": len(messages), "last_message": messages[-1] if messages else None}


def reduce_collect(
    state: Mapping[str, Any], message_body: Any, extra_actions: Iterable[Action] = ()
) -> tuple[dict[str, Any], list[Action]]:
    """Append the body (``None`` -> ``{}``); event ``reducer_received {count}``, then
    ``extra_actions``, then ``("complete_job", result)`` when the completion rule holds."""
    messages = [*(state.get("messages") or []), {} if message_body is None else message_body]
    new_state = {**state, "messages": messages}
    actions: list[Action] = [("event", "reducer_received", {"count": len(messages)}), *extra_actions]
    if should_complete(len(messages), new_state.get("complete_on_message"), new_state.get("complete_after")):
        actions.append(("complete_job", reduce_result(new_state)))
    return new_state, actions


# -- stream ------------------------------------------------------------------------------------


def stream_init(config: Mapping[str, Any] | None = None) -> dict[str, Any]:
    return {
        "chunks_received": 0,
        "items_seen": 0,
        "stream_open": False,
        "stream_id": (config or {}).get("stream_id"),
    }


def stream_observe(state: Mapping[str, Any], n_items: int) -> tuple[dict[str, Any], list[Action]]:
    """Observe one chunk of ``n_items`` items; event ``stream_chunk_processed``."""
    if isinstance(n_items, bool) or not isinstance(n_items, int) or n_items < 0:
        raise ValidationError(f"stream chunk item count must be a non-negative integer, got {inspect(n_items)}")
    chunks = int(state.get("chunks_received", 0)) + 1
    items = int(state.get("items_seen", 0)) + n_items
    new_state = {**state, "chunks_received": chunks, "items_seen": items}
    return new_state, [("event", "stream_chunk_processed", {"chunks_received": chunks, "items_seen": items})]


# -- batch -------------------------------------------------------------------------------------


def batch_init(config: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``batch_size`` from ``config`` (default 10); raises ``ValidationError`` unless an integer > 0."""
    size = (config or {}).get("batch_size")
    if size is None:
        size = DEFAULT_BATCH_SIZE
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValidationError(f"config.batch_size must be an integer > 0, got {inspect(size)}")
    return {"batch": [], "batch_size": size, "flushed_batches": 0}


def batch_push(state: Mapping[str, Any], item: Any) -> tuple[dict[str, Any], list[Any] | None, list[Action]]:
    """Buffer ``item``; returns ``(state, flushed items or None, actions)``.

    The event ``batch_buffered {size}`` reports the buffer length after the push (so it equals
    ``batch_size`` on a flush); on a flush it also carries the new ``flushed_batches``.
    """
    batch = [*(state.get("batch") or []), item]
    size = len(batch)
    if size < int(state.get("batch_size", DEFAULT_BATCH_SIZE)):
        return {**state, "batch": batch}, None, [("event", "batch_buffered", {"size": size})]
    flushed = int(state.get("flushed_batches", 0)) + 1
    new_state = {**state, "batch": [], "flushed_batches": flushed}
    return new_state, batch, [("event", "batch_buffered", {"size": size, "flushed_batches": flushed})]
