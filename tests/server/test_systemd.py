"""sd_notify datagrams on sockets the test binds (path and abstract), the watchdog, and the unit file."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
from mn_server_testlib import ROOT

from mncore.config import SystemdEnv, systemd_env
from server.systemd import Notifier


def bound(address: str | bytes) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(5)
    return sock


def test_ready_status_stopping_on_a_path_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "notify.sock")
    with bound(path) as sock:
        notifier = Notifier(SystemdEnv(path, 0, None))
        assert notifier.enabled and notifier.ready("serving")  # closed at the end of the test
        assert sock.recv(4096).decode().split("\n") == ["READY=1", "STATUS=serving", f"MAINPID={os.getpid()}"]
        notifier.status("busy")
        assert sock.recv(4096) == b"STATUS=busy"
        notifier.stopping("draining", extend_s=2.5)
        assert sock.recv(4096) == b"STOPPING=1\nSTATUS=draining\nEXTEND_TIMEOUT_USEC=2500000"
        notifier.reloading()
        lines = sock.recv(4096).decode().split("\n")
        assert lines[0] == "RELOADING=1" and lines[1].startswith("MONOTONIC_USEC=")
        notifier.close()


def test_notify_never_blocks_on_a_listener_that_stopped_reading(tmp_path: Path) -> None:
    path = str(tmp_path / "notify.sock")
    with bound(path) as sock:  # never read: its queue fills up
        notifier = Notifier(SystemdEnv(path, 0, None))
        results = [notifier.watchdog() for _ in range(2000)]  # a blocking send would hang here
        assert results[0] is True and results[-1] is False  # the overflow is dropped, not waited for
        assert sock.recv(4096) == b"WATCHDOG=1"
        notifier.close()


def test_abstract_socket(tmp_path: Path) -> None:
    name = f"mn-test-{os.getpid()}-{tmp_path.name}"
    with bound(b"\0" + name.encode()) as sock, Notifier(SystemdEnv("@" + name, 0, None)) as notifier:
        notifier.watchdog()
        assert sock.recv(4096) == b"WATCHDOG=1"


def test_disabled_without_socket_and_tolerant_of_a_dead_one(tmp_path: Path) -> None:
    assert not Notifier(SystemdEnv(None, 0, None)).ready("x")
    with Notifier(SystemdEnv(str(tmp_path / "gone.sock"), 0, None)) as dead:
        assert not dead.ready("x")  # logged, not raised


def test_watchdog_period_and_pid() -> None:
    assert Notifier(SystemdEnv("/run/x", 3_000_000, None)).watchdog_s == 3.0
    assert Notifier(SystemdEnv("/run/x", 3_000_000, os.getpid())).watchdog_s == 3.0
    assert Notifier(SystemdEnv("/run/x", 3_000_000, os.getpid() + 1)).watchdog_s == 0.0  # for another process
    assert Notifier(SystemdEnv(None, 3_000_000, None)).watchdog_s == 0.0
    env = systemd_env({"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "junk", "WATCHDOG_PID": "12"})
    assert env == SystemdEnv("@x", 0, 12)


async def test_watchdog_loop_pings_at_half_the_period(tmp_path: Path) -> None:
    path = str(tmp_path / "wd.sock")
    with bound(path) as sock:
        sock.setblocking(False)
        with Notifier(SystemdEnv(path, 100_000, None)) as notifier:  # 0.1 s: ping every 0.05 s
            task = asyncio.ensure_future(notifier.watchdog_loop())
            await asyncio.sleep(0.3)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        pings = 0
        while True:
            try:
                assert sock.recv(64) == b"WATCHDOG=1"
            except BlockingIOError:
                break
            pings += 1
        assert pings >= 4


def test_unit_file_verifies(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    text = (ROOT / "systemd" / "mirror-neuron.service").read_text()
    assert "Type=notify" in text and "KillSignal=SIGTERM" in text and "Restart=on-failure" in text
    # verify checks that ExecStart's binary exists: point it at one that does, change nothing else
    unit = tmp_path / "mirror-neuron.service"
    unit.write_text(text.replace("/opt/mirror-neuron/.venv/bin/mn", shutil.which("true") or "/bin/true"))
    result = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "mirror-neuron.service" not in result.stderr, result.stderr  # no warnings about our unit


def test_stop_timeout_exceeds_the_default_grace() -> None:
    from mncore.config import Settings
    from server.rest.server import GRACEFUL_TIMEOUT_S

    text = (ROOT / "systemd" / "mirror-neuron.service").read_text()
    stop = next(line for line in text.splitlines() if line.startswith("TimeoutStopSec="))
    seconds = int(stop.split("=", 1)[1].rstrip("s"))
    assert seconds > Settings.from_env({}).shutdown_grace_seconds + GRACEFUL_TIMEOUT_S
    settings = [line for line in text.splitlines() if not line.startswith("#")]
    for option in ("ProtectKernelTunables=", "RestrictNamespaces=", "PrivateUsers=", "ProtectProc="):
        assert not any(line.startswith(option) for line in settings), option  # they break bubblewrap
