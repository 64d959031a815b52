"""Shared-memory segments: names, create / attach / unlink, and cleanup of stale ones.

A segment is ``/dev/shm/mn_<name>`` (see ``layout.py``). Creation writes the common header
with the magic still zero; the structure initialises its lock and body, then
:func:`publish` stores the magic, which is what attachers wait for.
"""

from __future__ import annotations

import ctypes
import logging
import mmap
import os
import re
import secrets
import time
from typing import Any, Self

from . import _os, layout
from ._bell import Bell
from ._os import pid_alive, wall_ms

__all__ = ["Segment", "SegmentHandle", "cleanup_stale", "full_name", "shm_path", "unlink_segment"]

logger = logging.getLogger(__name__)

_NAME_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,200}$")
_ATTACH_WAIT_S = 2.0
_INCOMPLETE_GRACE_S = 60.0


def full_name(name: str | None) -> str:
    """``mn_`` + the caller's name (a random one when None); a name already prefixed is kept."""
    if name is None:
        name = f"{os.getpid()}_{secrets.token_hex(6)}"
    if not isinstance(name, str) or not name:
        raise ValueError("segment name must be a non-empty string")
    if not name.startswith(layout.PREFIX):
        name = layout.PREFIX + name
    if not _NAME_RE.match(name):
        raise ValueError(f"segment name {name!r} may only contain letters, digits, '_', '.', '-' (max 200)")
    return name


def shm_path(name: str) -> str:
    return os.path.join(layout.SHM_DIR, name)


class Segment:
    """An open segment: its name, path, file descriptor and ``MAP_SHARED`` mapping."""

    __slots__ = ("fd", "mm", "name", "path")

    def __init__(self, name: str, fd: int, mm: mmap.mmap) -> None:
        self.name = name
        self.path = shm_path(name)
        self.fd = fd
        self.mm = mm

    @classmethod
    def create(cls, name: str | None, size: int, body_offset: int) -> Segment:
        full = full_name(name)
        fd = os.open(shm_path(full), os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            os.ftruncate(fd, size)
            mm = mmap.mmap(fd, size)
        except BaseException:
            os.close(fd)
            _unlink(full)
            raise
        layout.HEADER_STRUCT.pack_into(mm, 0, b"\0\0\0\0", layout.VERSION, os.getpid(), body_offset, wall_ms(), size)
        return cls(full, fd, mm)

    @classmethod
    def attach(cls, name: str, magic: bytes) -> Segment:
        full = full_name(name)
        fd = os.open(shm_path(full), os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            size = os.fstat(fd).st_size
            if size < layout.MB_DATA:
                raise ValueError(f"shared memory segment {full} is too small to be a mncore structure")
            mm = mmap.mmap(fd, size)
        except BaseException:
            os.close(fd)
            raise
        try:
            _check_header(full, mm, magic, size)
        except BaseException:
            mm.close()
            os.close(fd)
            raise
        return cls(full, fd, mm)

    def publish(self, magic: bytes) -> None:
        """Store the magic: the segment is initialised and may be attached."""
        self.mm[layout.HDR_MAGIC : layout.HDR_MAGIC + 4] = magic

    def close(self) -> None:
        mm, self.mm = self.mm, None  # type: ignore[assignment]
        if mm is not None:
            mm.close()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def unlink(self) -> bool:
        return _unlink(self.name)


def unlink_segment(name: str) -> bool:
    """Remove ``/dev/shm/<name>``; False when it was already gone."""
    return _unlink(full_name(name))


def _check_header(name: str, mm: mmap.mmap, magic: bytes, size: int) -> None:
    deadline = time.monotonic() + _ATTACH_WAIT_S
    while True:
        found, version, _pid, _body, _created, total = layout.HEADER_STRUCT.unpack_from(mm, 0)
        if found != b"\0\0\0\0" or time.monotonic() > deadline:
            break
        time.sleep(0.001)  # the creator is still initialising
    if found != magic:
        raise ValueError(f"shared memory segment {name} is not a {_kind(magic)} (magic {found!r})")
    if version != layout.VERSION:
        raise ValueError(
            f"shared memory segment {name} has layout version {version}, this build reads {layout.VERSION}"
        )
    if total != size:
        raise ValueError(f"shared memory segment {name} is {size} bytes but its header says {total}")


def _kind(magic: bytes) -> str:
    return {layout.MAILBOX_MAGIC: "mailbox", layout.SLOTS_MAGIC: "slot table"}.get(magic, repr(magic))


def _unlink(name: str) -> bool:
    try:
        os.unlink(shm_path(name))
    except FileNotFoundError:
        return False
    return True


def cleanup_stale(prefix: str = layout.PREFIX) -> list[str]:
    """Unlink every ``/dev/shm/<prefix>*`` mncore segment whose creator process is dead.

    ``prefix`` gets ``mn_`` prepended when it lacks it. A segment whose creator died before
    publishing its magic is removed too; files that are not mncore segments are left alone.
    Returns the names removed. The supervisor calls this at start so a crash leaks nothing.
    Creator pids are those of the caller's pid namespace; a pid reused since the segment was
    created counts as dead (the process start time is compared with the creation time).
    """
    if not prefix.startswith(layout.PREFIX):
        prefix = layout.PREFIX + prefix
    removed: list[str] = []
    try:
        entries = list(os.scandir(layout.SHM_DIR))
    except FileNotFoundError:
        return removed
    for entry in entries:
        if not entry.name.startswith(prefix) or not entry.is_file(follow_symlinks=False):
            continue
        if _is_stale(entry.path) and _unlink(entry.name):
            logger.info("removed stale shared memory segment %s", entry.name)
            removed.append(entry.name)
    return removed


def _is_stale(path: str) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        raw = os.pread(fd, layout.HEADER_STRUCT.size, 0)
        age = time.time() - os.fstat(fd).st_mtime
    finally:
        os.close(fd)
    if len(raw) < layout.HEADER_STRUCT.size:
        return False
    magic, _version, pid, _body, created_ms, _size = layout.HEADER_STRUCT.unpack(raw)
    if magic in (layout.MAILBOX_MAGIC, layout.SLOTS_MAGIC) or (magic == b"\0\0\0\0" and pid):
        return not pid_alive(pid, created_ms)
    return magic == b"\0\0\0\0" and not any(raw) and age > _INCOMPLETE_GRACE_S


class SegmentHandle:
    """What every pure-Python structure on a segment shares: name, close/unlink, context manager,
    pickling by name, the doorbell fd and the lock-entry check. Subclasses set ``_noun`` and keep
    ``_repair``; :meth:`__init__` maps the segment, its lock word and its doorbell."""

    _noun = "segment"

    def __init__(self, segment: Segment) -> None:
        self._seg: Segment | None = segment
        self._name = segment.name
        self._mm: Any = segment.mm
        self._fd = segment.fd
        self._anchor: Any = ctypes.c_char.from_buffer(segment.mm)
        self._lock = ctypes.c_void_p(ctypes.addressof(self._anchor) + layout.HDR_LOCK)
        self._bell: Any = Bell(segment.path)

    @property
    def name(self) -> str:
        """The segment name, ``mn_`` prefix included (what ``attach`` takes)."""
        return self._name

    def close(self) -> None:
        """Unmap this handle (idempotent); the segment stays until :meth:`unlink`."""
        seg, self._seg = self._seg, None
        if seg is None:
            return
        self._bell.close()
        self._anchor = None
        self._mm = None
        seg.close()

    def unlink(self) -> None:
        """Remove the segment name (idempotent); open handles keep working until closed."""
        unlink_segment(self._name)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (type(self).attach, (self._name,))  # type: ignore[attr-defined]

    def __repr__(self) -> str:
        state = "" if self._seg is not None else " (closed)"
        return f"<{type(self).__name__} {self._name}{state}>"

    def fileno(self) -> int:
        """An fd that becomes readable when the structure rings (for ``loop.add_reader``)."""
        self._segment()
        return int(self._bell.fileno())

    def _segment(self) -> Segment:
        if self._seg is None:
            raise ValueError(f"{self._noun} is closed")
        return self._seg

    def _enter(self) -> None:
        if self._mm is None:
            raise ValueError(f"{self._noun} is closed")
        if _os.mutex_lock(self._lock):
            self._repair()

    def _repair(self) -> None:
        raise NotImplementedError
