"""One byte layout for both implementations, and the selection in ``mncore._fast``."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable

import fast_workers as w
import pytest
from fast_impls import CYTHON_SKIP

import mncore._fast as fast
from mncore._fast import layout

needs_cython = pytest.mark.skipif(CYTHON_SKIP is not None, reason=CYTHON_SKIP or "")


def _body(name: str, start: int) -> bytes:
    with open(f"/dev/shm/{name}", "rb") as fh:
        return fh.read()[start:]


@needs_cython
def test_mailboxes_are_byte_identical(shm_name: Callable[[], str]) -> None:
    """The same operations through either class leave the same bytes (header times and pid,
    and the lock, aside)."""
    images = []
    for impl in ("python", "cython"):
        mb = w.classes(impl)[0].create(shm_name(), capacity=2048)
        try:
            for i in range(60):
                assert mb.put(bytes([i]) * (i * 7 % 100), timeout=0)
                if i % 3:
                    mb.get(timeout=0)
            mb.put_many([b"abc", b"defgh"])
            mb.get_many(4)
            images.append(_body(mb.name, layout.MB_CAPACITY))
        finally:
            mb.close()
    assert images[0] == images[1]


@needs_cython
def test_slot_tables_are_byte_identical(shm_name: Callable[[], str]) -> None:
    images = []
    for impl in ("python", "cython"):
        table = w.classes(impl)[1].create(shm_name(), {"default": 2, "gpu": 1}, max_leases=8)
        try:
            table.try_acquire("default", 2, 1234, "a")
            table.enqueue("default", 1, 1234, "b")
            table.enqueue("gpu", 1, 99, b"c")
            table.release("a")
            raw = bytearray(_body(table.name, layout.ST_NPOOLS))
            base = layout.slots_entries_offset(2) - layout.ST_NPOOLS
            for i in range(8):  # wall-clock times differ between the two runs
                off = base + i * layout.ENTRY_SIZE
                raw[off + layout.ENTRY_REQUESTED : off + layout.ENTRY_ID] = bytes(16)
            images.append(bytes(raw))
        finally:
            table.close()
    assert images[0] == images[1]


def test_layout_tables_agree() -> None:
    assert layout.HEADER_STRUCT.size == 32
    assert layout.ENTRY_STRUCT.size == layout.ENTRY_SIZE
    assert layout.POOL_STRUCT.size == layout.POOL_SIZE
    assert layout.MB_DATA % 64 == 0
    assert layout.slots_entries_offset(3) % 64 == 0
    assert layout.mailbox_geometry(1) == (1024, 256)
    assert layout.mailbox_geometry(4097) == (4104, 1024)


def _selection(env_value: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "MNCORE_NO_EXTENSIONS"}
    if env_value is not None:
        env["MNCORE_NO_EXTENSIONS"] = env_value
    code = "import mncore._fast as f; print(f.HAS_EXTENSIONS, f.Mailbox.__name__, f.SlotTable.__name__)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_env_forces_pure() -> None:
    assert _selection("1") == "False PyMailbox PySlotTable"


@needs_cython
def test_extensions_selected_by_default() -> None:
    assert _selection(None) == "True Mailbox SlotTable"


def test_selection_is_exported() -> None:
    assert fast.PyMailbox.__name__ == "PyMailbox"
    assert fast.PySlotTable.__name__ == "PySlotTable"
    assert isinstance(fast.HAS_EXTENSIONS, bool)
    assert (fast.Mailbox is fast.PyMailbox) is not fast.HAS_EXTENSIONS
