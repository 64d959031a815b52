"""Process trees: sampling (peak RSS, descendants seen) and killing (executor-contract.md §6, §7).

Sampling reads ``/proc/<pid>/task/<tid>/children`` and ``/proc/<pid>/stat`` directly: it runs
every ~50 ms per running payload, and psutil's ``children()`` scans every process on the host.
psutil is used where identity matters (signalling a pid that may have been reused) and on the
rare kill path.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterable

import psutil

__all__ = ["TreeSampler", "collect_victims", "group_alive", "signal_group", "tree_pids"]

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_HAVE_CHILDREN_FILE = os.path.exists(f"/proc/{os.getpid()}/task/{os.getpid()}/children")


def _read(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.read(fd, 65536)
    finally:
        os.close(fd)


def _children(pid: int) -> list[int]:
    if not _HAVE_CHILDREN_FILE:
        try:
            return [p.pid for p in psutil.Process(pid).children()]
        except psutil.Error:
            return []
    out: list[int] = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            out.extend(int(x) for x in _read(f"/proc/{pid}/task/{tid}/children").split())
        except OSError:
            continue
    return out


def tree_pids(root: int) -> list[int]:
    """``root`` and all its current descendants (best effort: processes come and go)."""
    pids = [root]
    index = 0
    while index < len(pids):
        pids.extend(_children(pids[index]))
        index += 1
    return pids


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat(pid: int) -> tuple[int, int, int]:
    """(rss bytes, user ticks, system ticks) of ``pid``; CPU includes its reaped children."""
    try:
        stat = _read(f"/proc/{pid}/stat")
        fields = stat[stat.rindex(b")") + 2 :].split()
        user = int(fields[11]) + int(fields[13])
        system = int(fields[12]) + int(fields[14])
        return int(fields[21]) * _PAGE, user, system
    except (OSError, ValueError, IndexError):
        return 0, 0, 0


class TreeSampler:
    """Peak RSS and CPU time of a process tree, and every descendant ever seen (for killing
    escapees). CPU is the highest sum seen over the live tree: it complements ``wait4`` rusage,
    which misses children that were never reaped by the root (bwrap's pid 1, containers)."""

    __slots__ = ("cpu_system_ms", "cpu_user_ms", "peak_rss", "root", "seen")

    def __init__(self, root: int) -> None:
        self.root = root
        self.peak_rss = 0
        self.seen: dict[int, psutil.Process] = {}
        self.cpu_user_ms = 0
        self.cpu_system_ms = 0

    def sample(self) -> None:
        total = user = system = 0
        for pid in tree_pids(self.root):
            rss, u, s = _stat(pid)
            total, user, system = total + rss, user + u, system + s
            if pid != self.root and pid not in self.seen:
                try:
                    self.seen[pid] = psutil.Process(pid)
                except psutil.Error:
                    pass
        self.peak_rss = max(self.peak_rss, total)
        self.cpu_user_ms = max(self.cpu_user_ms, user * 1000 // _TICK)
        self.cpu_system_ms = max(self.cpu_system_ms, system * 1000 // _TICK)


def collect_victims(
    root: int | None, seen: Iterable[psutil.Process] = (), marker: tuple[str, str] | None = None
) -> list[psutil.Process]:
    """Every process to kill: the tree of ``root`` now (``None`` once the root was reaped: its pid
    may belong to someone else), descendants seen earlier, and (``marker``) any process whose
    environment holds ``NAME=value`` -- that finds double-forked daemons that left the tree."""
    victims: dict[int, psutil.Process] = {}
    if root is not None:
        try:
            proc = psutil.Process(root)
            victims[root] = proc
            for child in proc.children(recursive=True):
                victims[child.pid] = child
        except psutil.Error:
            pass
    for proc in seen:
        if proc.pid not in victims and proc.is_running():
            victims[proc.pid] = proc
    if marker is not None:
        name, value = marker
        me = os.getpid()
        for proc in psutil.process_iter():
            if proc.pid in victims or proc.pid == me:
                continue
            try:
                if proc.environ().get(name) == value:
                    victims[proc.pid] = proc
            except psutil.Error:
                continue
    return list(victims.values())


def signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def kill_all(victims: Iterable[psutil.Process]) -> None:
    for proc in victims:
        try:
            proc.send_signal(signal.SIGKILL)
        except psutil.Error:
            pass


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def any_alive(victims: Iterable[psutil.Process]) -> bool:
    for proc in victims:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                return True
        except psutil.Error:
            continue
    return False
