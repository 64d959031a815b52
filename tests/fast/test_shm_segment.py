"""Segment naming and cleanup of segments whose creator died."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from typing import Any

import fast_workers as w
import pytest

from mncore._fast import PyMailbox, cleanup_stale
from mncore._fast.segment import full_name, unlink_segment


def test_names() -> None:
    assert full_name("abc") == "mn_abc"
    assert full_name("mn_abc") == "mn_abc"
    assert full_name(None).startswith(f"mn_{os.getpid()}_")
    for bad in ("", "a/b", "x" * 300, "sp ace"):
        with pytest.raises(ValueError, match="name"):
            full_name(bad)


def test_random_names_are_unique() -> None:
    a, b = PyMailbox.create(capacity=1024), PyMailbox.create(capacity=1024)
    try:
        assert a.name != b.name
    finally:
        for mb in (a, b):
            mb.close()
            mb.unlink()


def test_create_refuses_an_existing_name(shm_name: Callable[[], str]) -> None:
    name = shm_name()
    with PyMailbox.create(name, capacity=1024), pytest.raises(FileExistsError):
        PyMailbox.create(name, capacity=1024)


def test_cleanup_stale_after_sigkill(impl: str, ctx_for: Callable[[str], Any]) -> None:
    ctx = ctx_for("fork")
    prefix = f"mn_tclean_{os.getpid()}_{impl}_"
    ready = ctx.Queue()
    dead = ctx.Process(target=w.create_and_hang, args=(impl, f"{prefix}dead_", ready))
    alive = ctx.Process(target=w.create_and_hang, args=(impl, f"{prefix}alive_", ready))
    try:
        dead.start()
        dead_names = ready.get(timeout=30)
        alive.start()
        alive_names = ready.get(timeout=30)
        assert cleanup_stale(prefix) == []  # both creators run: nothing is stale
        os.kill(dead.pid, signal.SIGKILL)
        dead.join(10)
        assert sorted(cleanup_stale(prefix)) == sorted(dead_names)
        left = sorted(n for n in os.listdir("/dev/shm") if n.startswith(prefix))
        assert left == sorted(alive_names)
    finally:
        alive.kill()
        alive.join(10)
        for name in os.listdir("/dev/shm"):
            if name.startswith(prefix):
                unlink_segment(name)


def test_cleanup_stale_ignores_foreign_files() -> None:
    path = f"/dev/shm/mn_tforeign_{os.getpid()}"
    with open(path, "wb") as fh:
        fh.write(b"not a segment" * 10)
    try:
        assert cleanup_stale(f"tforeign_{os.getpid()}") == []
        assert os.path.exists(path)
    finally:
        os.unlink(path)
