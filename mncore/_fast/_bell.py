"""Parking and waking: inotify watches on the segment file, for threads and for asyncio.

A structure rings by ``pwrite``-ing its header's doorbell byte (``layout.HDR_BELL``), which
raises ``IN_MODIFY`` on the segment file for every inotify instance watching it. This module
owns the waiting side: one inotify instance per thread (shared by every segment the thread
waits on) and one per handle for asyncio (its fd is the handle's ``fileno()``).

The blocking and async logic of the structures is written once as generators that yield
"wait at most this many seconds for the bell" (``_ringops``/``_slotops``); :func:`run` and
:func:`run_async` drive them. Each driver sets up its watch *before* the generator's first
check, so a ring between a check and the wait is never lost.
"""

from __future__ import annotations

import asyncio
import logging
import os
import select
import threading
import time
from collections.abc import Generator
from typing import Any, TypeVar

from . import _os

__all__ = ["RECHECK_INTERVAL", "Bell", "run", "run_async"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Upper bound of one sleep: waiters re-check at least this often even without a ring.
RECHECK_INTERVAL = 0.25

_local = threading.local()
_warned = False


class _Inotify:
    """One inotify instance with reference-counted watches; belongs to the process that made it."""

    def __init__(self) -> None:
        self.fd = _os.inotify_init()
        self.pid = os.getpid()
        self._watches: dict[str, list[int]] = {}  # path -> [wd, refs]
        self._lock = threading.Lock()
        self._poll = select.poll()
        self._poll.register(self.fd, select.POLLIN)

    def watch(self, path: str) -> None:
        with self._lock:
            entry = self._watches.get(path)
            if entry is None:
                self._watches[path] = [_os.inotify_add_watch(self.fd, path), 1]
            else:
                entry[1] += 1

    def unwatch(self, path: str) -> None:
        with self._lock:
            entry = self._watches.get(path)
            if entry is None or self.fd < 0:
                return
            entry[1] -= 1
            if entry[1] <= 0:
                del self._watches[path]
                if self.pid == os.getpid():
                    _os.inotify_rm_watch(self.fd, entry[0])

    def wait(self, seconds: float) -> None:
        if self._poll.poll(max(0, int(seconds * 1000 + 0.999))):
            self.drain()

    def drain(self) -> None:
        # One read: rings coalesce while unread, and anything left keeps the fd readable.
        try:
            os.read(self.fd, 4096)
        except BlockingIOError:
            pass

    def close(self) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)

    def __del__(self) -> None:
        self.close()


class _Sleeper:
    """Fallback when no inotify instance can be had: exponential sleeps up to 20 ms."""

    def __init__(self) -> None:
        self._delay = 0.0005

    def wait(self, seconds: float) -> None:
        time.sleep(max(0.0, min(seconds, self._delay)))
        self._delay = min(self._delay * 2, 0.02)


def _thread_instance() -> _Inotify | None:
    inst: _Inotify | None = getattr(_local, "inotify", None)
    if inst is not None and inst.pid == os.getpid():
        return inst
    if inst is not None:  # inherited through fork: the fd shares the parent's queue
        inst.close()
    try:
        inst = _Inotify()
    except OSError as exc:
        _warn_fallback(exc)
        return None
    _local.inotify = inst
    return inst


def _warn_fallback(exc: OSError) -> None:
    global _warned
    if not _warned:
        _warned = True
        logger.warning("inotify unavailable (%s): shared-memory waits fall back to polling", exc)


class _AsyncBell:
    """The handle's asyncio side: one inotify instance, one reader per loop, many waiters."""

    def __init__(self, path: str) -> None:
        self.ino = _Inotify()
        self.ino.watch(path)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._futures: set[asyncio.Future[None]] = set()

    def arm(self) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._detach()
            loop.add_reader(self.ino.fd, self._on_readable)
            self._loop = loop
        fut: asyncio.Future[None] = loop.create_future()
        self._futures.add(fut)
        return fut

    async def wait(self, fut: asyncio.Future[None], seconds: float) -> None:
        try:
            await asyncio.wait({fut}, timeout=seconds)
        finally:
            self._futures.discard(fut)

    def _on_readable(self) -> None:
        self.ino.drain()
        futures, self._futures = self._futures, set()
        for fut in futures:
            if not fut.done():
                fut.set_result(None)

    def _detach(self) -> None:
        loop, self._loop = self._loop, None
        if loop is not None and not loop.is_closed():
            try:
                loop.remove_reader(self.ino.fd)
            except (RuntimeError, ValueError, OSError):
                pass

    def close(self) -> None:
        self._detach()
        self.ino.close()


class Bell:
    """The waiting side of one open handle (a mailbox or a slot table)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._instances: set[_Inotify] = set()
        self._aio: _AsyncBell | None = None
        self._lock = threading.Lock()

    def waiter(self) -> _Inotify | _Sleeper:
        """This thread's instance, watching this segment (set up before any check)."""
        inst = _thread_instance()
        if inst is None:
            return _Sleeper()
        if inst not in self._instances:
            with self._lock:
                if inst not in self._instances:
                    inst.watch(self.path)
                    self._instances.add(inst)
        return inst

    def async_bell(self) -> _AsyncBell | None:
        if self._aio is not None and self._aio.ino.pid != os.getpid():
            self._aio.ino.close()  # inherited through fork: never read the parent's queue
            self._aio = None
        if self._aio is None:
            try:
                self._aio = _AsyncBell(self.path)
            except OSError as exc:
                _warn_fallback(exc)
                return None
        return self._aio

    def fileno(self) -> int:
        bell = self.async_bell()
        if bell is None:
            raise OSError("no inotify instance available for this handle")
        return bell.ino.fd

    def close(self) -> None:
        with self._lock:
            instances, self._instances = self._instances, set()
        for inst in instances:
            inst.unwatch(self.path)
        if self._aio is not None:
            self._aio.close()
            self._aio = None


def run(bell: Bell, gen: Generator[float, None, T]) -> T:
    """Drive a wait generator on this thread."""
    waiter = bell.waiter()
    try:
        seconds = next(gen)
        while True:
            waiter.wait(seconds)
            seconds = gen.send(None)
    except StopIteration as stop:
        return stop.value
    finally:
        gen.close()


async def run_async(bell: Bell, gen: Generator[float, None, T]) -> T:
    """Drive a wait generator on the running event loop (the checks themselves never block
    except while a streamed record is being reassembled, which is memory-copy bound)."""
    aio = bell.async_bell()
    try:
        fut: Any = aio.arm() if aio is not None else None
        seconds = next(gen)
        delay = 0.0005
        while True:
            if aio is not None:
                await aio.wait(fut, seconds)
                fut = aio.arm()
            else:
                await asyncio.sleep(min(seconds, delay))
                delay = min(delay * 2, 0.02)
            seconds = gen.send(None)
    except StopIteration as stop:
        return stop.value
    finally:
        gen.close()
