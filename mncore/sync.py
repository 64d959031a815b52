"""A small synchronous facade over :class:`~mncore.runtime.Runtime`.

The runtime runs on an event loop in a background thread, so jobs keep running between calls;
every public coroutine method of the runtime is exposed as a blocking method here.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from .config import Settings
from .runtime import Runtime

__all__ = ["SyncRuntime"]

T = TypeVar("T")


class SyncRuntime:
    """Blocking access to a Runtime running on its own loop thread. Close it when done."""

    def __init__(self, settings: Settings | None = None, **runtime_options: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="mncore-runtime", daemon=True)
        self._thread.start()
        self.runtime = Runtime(settings, **runtime_options)
        self._call(self.runtime.start())

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.runtime, name)
        if not asyncio.iscoroutinefunction(method):
            return method

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._call(method(*args, **kwargs))

        call.__name__ = name
        call.__doc__ = method.__doc__
        return call

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self._call(self.runtime.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def __enter__(self) -> SyncRuntime:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
