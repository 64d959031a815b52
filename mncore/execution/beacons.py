"""Liveness beacons of one attempt (executor-contract.md §7).

Runtime beacons (``source: "runtime"``) are sent when ``beacon_enabled``: ``started``, ``working``
every ``beacon_interval_ms``, then ``completed`` or ``failed``. Agent beacons are stdout lines with
the beacon prefix; with ``agent_beacon_required`` a missing one within ``beacon_timeout_ms`` calls
``on_missed`` (which kills the process) after emitting ``agent_beacon_missed``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from .._util import now_iso
from .environment import truthy
from .output import Redactor, parse_beacon

logger = logging.getLogger(__name__)

__all__ = ["BEACON_DEADLINE_ERROR", "BEACON_SCHEMA", "BeaconMonitor", "Emit", "safe_emit"]

Emit = Callable[[str, dict[str, Any]], None]
BEACON_SCHEMA = "mn.agent.beacon.v1"
BEACON_DEADLINE_ERROR = "agent beacon deadline exceeded"


def safe_emit(emit: Emit, event_type: str, payload: dict[str, Any]) -> None:
    """Call the caller's ``emit``; an exception there must not break the run."""
    try:
        emit(event_type, payload)
    except Exception:
        logger.exception("emit(%s) raised; event dropped", event_type)


class BeaconMonitor:
    """Timers and events of the beacons of one attempt. Runs on the event loop thread."""

    def __init__(
        self,
        config: dict[str, Any],
        emit: Emit,
        attempt: int,
        redact: Redactor | None = None,
        on_missed: Callable[[], None] | None = None,
    ) -> None:
        self.enabled = truthy(config.get("beacon_enabled"))
        self.required = truthy(config.get("agent_beacon_required"))
        self.interval_s = max(float(config.get("beacon_interval_ms") or 15000), 10.0) / 1000.0
        self.timeout_ms = int(config.get("beacon_timeout_ms") or 45000)
        self.missed = False
        self.last_beacon_at: str | None = None
        self._emit = emit
        self._attempt = attempt
        self._redact = redact
        self.on_missed = on_missed
        self._sequence = 0
        self._tick: asyncio.TimerHandle | None = None
        self._deadline: asyncio.TimerHandle | None = None

    @property
    def active(self) -> bool:
        return self.enabled or self.required

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self.enabled:
            self._runtime("started")
            self._tick = loop.call_later(self.interval_s, self._working)
        if self.required:
            self._deadline = loop.call_later(self.timeout_ms / 1000.0, self._missed)

    def agent_beacon(self, text: str) -> None:
        """One stdout beacon line (the part after the prefix)."""
        if self._redact:
            text = self._redact(text)
        self.last_beacon_at = now_iso()
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = asyncio.get_running_loop().call_later(self.timeout_ms / 1000.0, self._missed)
        safe_emit(self._emit, "agent_beacon", parse_beacon(text))

    def finish(self, ok: bool) -> None:
        self.stop()
        if self.enabled:
            self._runtime("completed" if ok else "failed")

    def stop(self) -> None:
        for handle in (self._tick, self._deadline):
            if handle is not None:
                handle.cancel()
        self._tick = self._deadline = None

    def _runtime(self, status: str) -> None:
        self._sequence += 1
        payload = {
            "schema": BEACON_SCHEMA,
            "source": "runtime",
            "status": status,
            "sequence": self._sequence,
            "attempt": self._attempt,
            "timestamp": now_iso(),
        }
        safe_emit(self._emit, "agent_beacon", payload)

    def _working(self) -> None:
        self._runtime("working")
        self._tick = asyncio.get_running_loop().call_later(self.interval_s, self._working)

    def _missed(self) -> None:
        self._deadline = None
        if self.missed:
            return
        self.missed = True
        payload = {"timeout_ms": self.timeout_ms, "last_beacon_at": self.last_beacon_at}
        safe_emit(self._emit, "agent_beacon_missed", payload)
        if self.on_missed is not None:
            self.on_missed()
