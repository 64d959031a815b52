"""sd_notify: readiness, status, watchdog and stopping datagrams to systemd's ``NOTIFY_SOCKET``.

A plain ``AF_UNIX``/``SOCK_DGRAM`` client (no libsystemd): paths starting with ``@`` name
abstract sockets. Without ``NOTIFY_SOCKET`` every call is a no-op, so the daemon behaves the same
under systemd, in a container or in a terminal. Send failures are logged, never raised: a
missing notify socket must not take the node down.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time

from mncore.config import SystemdEnv, systemd_env

logger = logging.getLogger(__name__)

__all__ = ["Notifier"]


def _address(path: str | None) -> str | bytes | None:
    if not path:
        return None
    if path.startswith("@"):
        return b"\0" + path[1:].encode("utf-8")
    return path


class Notifier:
    """Sends ``KEY=value`` lines to systemd; ``watchdog_s`` is the period to ping at (0 = no watchdog)."""

    def __init__(self, env: SystemdEnv | None = None) -> None:
        env = env if env is not None else systemd_env()
        self.address = _address(env.notify_socket)
        ours = env.watchdog_pid in (None, os.getpid())
        self.watchdog_s = env.watchdog_usec / 1_000_000 if env.watchdog_usec and ours and self.address else 0.0
        self._sock: socket.socket | None = None

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, *lines: str) -> bool:
        """Send one datagram of ``lines``; true when sent.

        Never blocks: the socket is non-blocking, so a listener that stopped reading (its queue
        full) costs a dropped datagram and a warning, not a stalled event loop.
        """
        if self.address is None:
            return False
        try:
            if self._sock is None:
                kind = socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK
                self._sock = socket.socket(socket.AF_UNIX, kind)
            self._sock.sendto("\n".join(lines).encode("utf-8"), self.address)
        except OSError as exc:
            logger.warning("sd_notify to %r failed: %s", self.address, exc)
            return False
        return True

    def ready(self, status: str) -> bool:
        return self.notify("READY=1", f"STATUS={status}", f"MAINPID={os.getpid()}")

    def status(self, status: str) -> bool:
        return self.notify(f"STATUS={status}")

    def reloading(self) -> bool:
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={usec}", "STATUS=reloading configuration")

    def stopping(self, status: str, extend_s: float = 0.0) -> bool:
        lines = ["STOPPING=1", f"STATUS={status}"]
        if extend_s > 0:
            lines.append(f"EXTEND_TIMEOUT_USEC={int(extend_s * 1_000_000)}")
        return self.notify(*lines)

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    async def watchdog_loop(self) -> None:
        """Ping at half the watchdog period until cancelled (returns at once without a watchdog)."""
        if self.watchdog_s <= 0:
            return
        while True:
            self.watchdog()
            await asyncio.sleep(self.watchdog_s / 2)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> Notifier:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
