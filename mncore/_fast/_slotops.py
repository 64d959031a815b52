"""Slot-table logic shared by both implementations: argument checks, exact errors, waiting.

Primitives each implementation provides (one critical section each):
``_enqueue(pool, slots, owner_pid, key, mode) -> (granted, index, ticket)`` with ``mode`` one of
``TRY`` (grant or nothing), ``QUEUE`` (grant or join the FIFO) and ``FORCE`` (record a grant
decided elsewhere); ``_entry_state(index, ticket, park) -> STATE_*`` (``STATE_FREE`` when the
entry is gone); ``_withdraw(index, ticket) -> granted`` (leave the queue unless granted);
``_release_entry(index, ticket)``; ``_snapshot()`` / ``_remove_dead(victims)`` for
``reclaim_dead``; ``_bell_enter()`` / ``_bell_leave()`` and ``_bell``.
"""

from __future__ import annotations

import time
from collections.abc import Generator
from typing import Any

from ..errors import RetryLaterError, ValidationError
from . import _bell
from ._os import start_ms
from .layout import LEASE_ID_MAX, STATE_GRANTED, STATE_QUEUED

__all__ = ["acquire", "acquire_async", "check_capacity", "check_slots", "lease_key", "reclaim_dead"]

TRY = 0
QUEUE = 1
FORCE = 2

# error codes returned by primitives (raised here so both builds raise the same thing)
ERR_NONE = 0
ERR_TOO_MANY = 1
ERR_DUPLICATE = 2
ERR_FULL = 3

STATE_NAMES = {STATE_QUEUED: "queued", STATE_GRANTED: "granted"}

Wait = Generator[float, None, Any]


def unknown_pool(pool: Any) -> ValidationError:
    return ValidationError(f'unknown executor pool "{pool}"')


def check_slots(slots: Any) -> int:
    if not isinstance(slots, int) or isinstance(slots, bool) or slots < 1:
        raise ValidationError("executor slots must be a positive integer")
    return slots


def check_capacity(capacity: Any) -> int:
    if not isinstance(capacity, int) or isinstance(capacity, bool) or capacity < 1 or capacity > 0xFFFFFFFF:
        raise ValidationError(f"pool capacity must be a positive integer (got {capacity!r})")
    return capacity


def check_owner(owner_pid: Any) -> int:
    if not isinstance(owner_pid, int) or isinstance(owner_pid, bool) or not 0 < owner_pid <= 0xFFFFFFFF:
        raise ValidationError(f"owner_pid must be a positive process id (got {owner_pid!r})")
    return owner_pid


def lease_key(lease_id: Any) -> bytes:
    """The stored form of a lease id: str as UTF-8 (surrogates escaped), bytes as they are."""
    if isinstance(lease_id, str):
        key = lease_id.encode("utf-8", "surrogateescape")
    elif isinstance(lease_id, bytes | bytearray | memoryview):
        key = bytes(lease_id)
    else:
        raise ValidationError(f"lease_id must be str or bytes (got {type(lease_id).__name__})")
    if not 0 < len(key) <= LEASE_ID_MAX:
        raise ValidationError(f"lease_id must be 1 to {LEASE_ID_MAX} bytes (got {len(key)})")
    return key


def check_request(table: Any, pool: Any, slots: Any, owner_pid: Any, lease_id: Any) -> tuple[int, int, bytes]:
    """Validate in the spec's order: pool, then slots; then the lease id and the owner pid."""
    table._pool(pool)
    return check_slots(slots), check_owner(owner_pid), lease_key(lease_id)


def lease_text(key: bytes) -> str:
    return key.decode("utf-8", "surrogateescape")


def raise_error(code: int, table: Any, slots: int, capacity: int, key: bytes) -> None:
    if code == ERR_TOO_MANY:
        raise ValidationError(f"requested {slots} executor slots but pool capacity is {capacity}")
    if code == ERR_DUPLICATE:
        raise ValidationError(f"lease id {lease_text(key)!r} is already in use in slot table {table.name}")
    if code == ERR_FULL:
        raise RetryLaterError(
            f"slot table {table.name} is full ({table.max_leases} leases and waiters); "
            "create it with a larger max_leases"
        )


def record(key: bytes, pool: str, slots: int, owner: int, requested: int, acquired: int, state: int) -> dict[str, Any]:
    return {
        "lease_id": lease_text(key),
        "pool": pool,
        "slots": slots,
        "owner_pid": owner,
        "requested_at_ms": requested,
        "acquired_at_ms": acquired if state == STATE_GRANTED else None,
        "state": STATE_NAMES.get(state, "free"),
    }


# ---- waiting --------------------------------------------------------------------------------


def acquire_proc(table: Any, pool: str, slots: int, owner: int, key: bytes, deadline: float | None) -> Wait:
    granted, index, ticket = table._enqueue(pool, slots, owner, key, QUEUE)
    if granted:
        return True
    table._bell_enter()
    try:
        while True:
            state = table._entry_state(index, ticket, True)
            if state != STATE_QUEUED:
                return state == STATE_GRANTED
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return bool(table._withdraw(index, ticket))
            yield _bell.RECHECK_INTERVAL if left is None else min(left, _bell.RECHECK_INTERVAL)
    except BaseException:
        if table._withdraw(index, ticket):  # granted while we were being cancelled: give it back
            table._release_entry(index, ticket)
        raise
    finally:
        table._bell_leave()


def _deadline(timeout: float | None) -> float | None:
    return None if timeout is None else time.monotonic() + max(0.0, timeout)


def acquire(table: Any, pool: str, slots: int, owner: int, lease_id: Any, timeout: float | None) -> bool:
    slots, owner, key = check_request(table, pool, slots, owner, lease_id)
    if timeout is not None and timeout <= 0:
        return bool(table._enqueue(pool, slots, owner, key, TRY)[0])
    return bool(_bell.run(table._bell, acquire_proc(table, pool, slots, owner, key, _deadline(timeout))))


async def acquire_async(table: Any, pool: str, slots: int, owner: int, lease_id: Any, timeout: float | None) -> bool:
    slots, owner, key = check_request(table, pool, slots, owner, lease_id)
    proc = acquire_proc(table, pool, slots, owner, key, _deadline(timeout))
    return bool(await _bell.run_async(table._bell, proc))


def reclaim_dead(table: Any) -> list[dict[str, Any]]:
    """Release leases and drop waiters whose owner process is gone (or whose pid was reused)."""
    starts: dict[int, int | None] = {}
    victims = []
    for index, ticket, owner, requested in table._snapshot():
        if owner not in starts:
            starts[owner] = start_ms(owner)
        started = starts[owner]
        if started is None or started > requested + 2000:
            victims.append((index, ticket))
    return list(table._remove_dead(victims)) if victims else []
