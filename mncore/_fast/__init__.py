"""Shared-memory structures of the native runtime: the pool mailboxes and the slot table.

Two implementations with one API and one byte layout (``layout.py``): Cython (``_ring``,
``_slots``) and pure Python (``ring.PyMailbox``, ``slots.PySlotTable``). They interoperate on a
live segment. This module is the one place that chooses: ``Mailbox`` / ``SlotTable`` are the
Cython classes when they are built and ``MNCORE_NO_EXTENSIONS`` is not set, else the pure ones;
``PyMailbox`` / ``PySlotTable`` are always importable.
"""

from __future__ import annotations

import logging

from ..config import extensions_disabled
from .ring import PyMailbox
from .segment import cleanup_stale
from .slots import PySlotTable

__all__ = [
    "HAS_EXTENSIONS",
    "Mailbox",
    "PyMailbox",
    "PySlotTable",
    "SlotTable",
    "cleanup_stale",
]

logger = logging.getLogger(__name__)

# Typed as the pure classes: the Cython ones have the same API (see the .pyi stubs).
Mailbox: type[PyMailbox] = PyMailbox
SlotTable: type[PySlotTable] = PySlotTable
#: True when ``Mailbox`` / ``SlotTable`` are the Cython implementations.
HAS_EXTENSIONS = False

if extensions_disabled():
    logger.debug("mncore._fast: MNCORE_NO_EXTENSIONS is set, using the pure-Python structures")
else:
    try:
        from ._ring import Mailbox as _CMailbox
        from ._slots import SlotTable as _CSlotTable
    except ImportError as exc:
        logger.debug("mncore._fast: Cython extensions unavailable (%s), using the pure-Python structures", exc)
    else:
        Mailbox = _CMailbox  # type: ignore[assignment]
        SlotTable = _CSlotTable  # type: ignore[assignment]
        HAS_EXTENSIONS = True
        logger.debug("mncore._fast: using the Cython structures")
