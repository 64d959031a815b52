"""Keys from the terminal without blocking: cbreak mode plus an event-loop reader on stdin.

:class:`KeyReader` is a context manager: it switches a terminal stdin to cbreak mode (keys arrive
one by one, unechoed; Ctrl+C still raises SIGINT), calls ``on_key`` for each key from the event
loop, and restores the terminal on exit. When stdin is not a terminal it does nothing.
"""

from __future__ import annotations

import asyncio
import os
import sys
import termios
import tty
from collections.abc import Callable
from typing import Any

__all__ = ["KeyReader", "parse_keys"]

_SEQUENCES = {
    b"\x1b[A": "up",
    b"\x1b[B": "down",
    b"\x1b[C": "right",
    b"\x1b[D": "left",
    b"\x1bOA": "up",
    b"\x1bOB": "down",
    b"\x1bOC": "right",
    b"\x1bOD": "left",
}
_SINGLE = {b"\r": "enter", b"\n": "enter", b"\x7f": "backspace", b"\x08": "backspace", b"\x1b": "escape"}


def parse_keys(data: bytes) -> list[str]:
    """Key names in ``data``: ``up``/``down``/``left``/``right``, ``enter``, ``escape``,
    ``backspace``, or the character itself."""
    keys = []
    i = 0
    while i < len(data):
        three = data[i : i + 3]
        if three in _SEQUENCES:
            keys.append(_SEQUENCES[three])
            i += 3
            continue
        one = data[i : i + 1]
        if one == b"\x1b" and data[i + 1 : i + 2] == b"[":  # an unknown CSI sequence: skip it whole
            end = i + 2
            while end < len(data) and not 0x40 <= data[end] <= 0x7E:
                end += 1
            i = end + 1
            continue
        keys.append(_SINGLE.get(one) or one.decode("utf-8", "replace"))
        i += 1
    return keys


class KeyReader:
    """Deliver key presses to ``on_key`` while the ``with`` block runs (see the module docstring)."""

    def __init__(self, on_key: Callable[[str], None], stream: Any = None) -> None:
        self.on_key = on_key
        self.stream = stream if stream is not None else sys.stdin
        self.fd: int | None = None
        self._saved: list[Any] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def active(self) -> bool:
        return self.fd is not None

    def __enter__(self) -> KeyReader:
        try:
            fd = self.stream.fileno()
        except (AttributeError, OSError, ValueError):
            return self
        if not os.isatty(fd):
            return self
        # A private open file description: the event loop makes the fd it watches non-blocking,
        # which on the shared stdin/stdout description would make terminal writes fail midway.
        own = os.open(os.ttyname(fd), os.O_RDONLY | os.O_NOCTTY)
        self._saved = termios.tcgetattr(own)
        tty.setcbreak(own)
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(own, self._readable)
        self.fd = own
        return self

    def _readable(self) -> None:
        assert self.fd is not None
        try:
            data = os.read(self.fd, 64)
        except OSError:
            return
        for key in parse_keys(data):
            self.on_key(key)

    def __exit__(self, *exc: Any) -> None:
        if self.fd is None:
            return
        assert self._loop is not None and self._saved is not None
        self._loop.remove_reader(self.fd)
        termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved)
        os.close(self.fd)
        self.fd = None
