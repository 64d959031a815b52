"""Event loop selection: uvloop in every process when available, asyncio otherwise."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")

try:
    import uvloop

    HAS_UVLOOP = True
except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
    uvloop = None  # type: ignore[assignment]
    HAS_UVLOOP = False


def uvloop_loop_type() -> type:
    """The uvloop loop class (``type(None)`` without uvloop), for reporting which loop runs."""
    return uvloop.Loop if HAS_UVLOOP else type(None)


def new_event_loop() -> asyncio.AbstractEventLoop:
    if HAS_UVLOOP:
        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def run(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on uvloop when it is installed."""
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(coro)
