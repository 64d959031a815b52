"""Operating-system helpers shared by both implementations: libc through ctypes, pids, clocks.

Only the pure-Python build locks through ctypes; the Cython build calls the same libc
functions directly. inotify is used by both for parking (see ``_bell.py``).
"""

from __future__ import annotations

import ctypes
import errno
import itertools
import os
import time

import psutil

__all__ = [
    "IN_MODIFY",
    "inotify_add_watch",
    "inotify_init",
    "inotify_rm_watch",
    "mutex_consistent",
    "mutex_init",
    "mutex_lock",
    "mutex_unlock",
    "new_token",
    "pid_alive",
    "start_ms",
    "token_pid",
    "wall_ms",
]

_libc = ctypes.CDLL(None, use_errno=True)

_PTHREAD_PROCESS_SHARED = 1
_PTHREAD_MUTEX_ROBUST = 1
IN_MODIFY = 0x00000002
_IN_NONBLOCK = os.O_NONBLOCK
_IN_CLOEXEC = os.O_CLOEXEC

_lock = _libc.pthread_mutex_lock
_lock.argtypes = [ctypes.c_void_p]
_unlock = _libc.pthread_mutex_unlock
_unlock.argtypes = [ctypes.c_void_p]
_consistent = _libc.pthread_mutex_consistent
_consistent.argtypes = [ctypes.c_void_p]


def mutex_init(address: int) -> None:
    """Initialise a process-shared robust mutex at ``address`` (inside a shared mapping)."""
    attr = ctypes.create_string_buffer(64)  # pthread_mutexattr_t is 4 bytes on glibc; be generous
    for call, args in (
        (_libc.pthread_mutexattr_init, ()),
        (_libc.pthread_mutexattr_setpshared, (_PTHREAD_PROCESS_SHARED,)),
        (_libc.pthread_mutexattr_setrobust, (_PTHREAD_MUTEX_ROBUST,)),
    ):
        rc = call(attr, *args)
        if rc:
            raise OSError(rc, f"pthread mutex attribute setup failed: {os.strerror(rc)}")
    rc = _libc.pthread_mutex_init(ctypes.c_void_p(address), attr)
    _libc.pthread_mutexattr_destroy(attr)
    if rc:
        raise OSError(rc, f"pthread_mutex_init failed: {os.strerror(rc)}")


def mutex_lock(address: ctypes.c_void_p) -> bool:
    """Lock; True when the previous holder died inside its critical section (state to repair)."""
    rc = _lock(address)
    if rc == 0:
        return False
    if rc == errno.EOWNERDEAD:
        _consistent(address)
        return True
    raise OSError(rc, f"pthread_mutex_lock failed: {os.strerror(rc)}")


def mutex_unlock(address: ctypes.c_void_p) -> None:
    _unlock(address)


def mutex_consistent(address: ctypes.c_void_p) -> None:
    _consistent(address)


def inotify_init() -> int:
    """A non-blocking, close-on-exec inotify instance; raises ``OSError`` when none is available."""
    fd = _libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"inotify_init1: {os.strerror(err)}")
    return int(fd)


def inotify_add_watch(fd: int, path: str, mask: int = IN_MODIFY) -> int:
    wd = _libc.inotify_add_watch(fd, os.fsencode(path), ctypes.c_uint32(mask))
    if wd < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"inotify_add_watch {path}: {os.strerror(err)}")
    return int(wd)


def inotify_rm_watch(fd: int, wd: int) -> None:
    _libc.inotify_rm_watch(fd, wd)


# ---- processes, tokens, clocks --------------------------------------------------------------

_counter = itertools.count(1)


def new_token() -> int:
    """A token unique among live processes: ``pid << 32 | per-process counter`` (never 0)."""
    return (os.getpid() << 32) | ((next(_counter) & 0xFFFFFFFF) or 1)


def token_pid(token: int) -> int:
    return token >> 32


def start_ms(pid: int) -> int | None:
    """Wall-clock ms at which ``pid`` started; None when it does not run (zombies included),
    0 when it runs but its start time cannot be read."""
    if pid <= 0:
        return None
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return int(proc.create_time() * 1000.0)
    except psutil.NoSuchProcess:
        return None
    except psutil.AccessDenied:
        return 0


def pid_alive(pid: int, since_ms: int = 0) -> bool:
    """Whether ``pid`` runs. With ``since_ms``, a process that started after that wall-clock
    time (2 s tolerance for clock adjustments) is a reused pid: the original one is dead."""
    started = start_ms(pid)
    if started is None:
        return False
    return not (since_ms and started > since_ms + 2000)


def wall_ms() -> int:
    return int(time.time() * 1000)
