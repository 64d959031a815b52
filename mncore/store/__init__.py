"""Persistence: one :class:`Store` contract, three backends, selected by ``Settings.store_target``.

=====================  ==================================================================
``redis://…``          :class:`RedisStore` (also ``rediss://``), namespace ``MN_REDIS_NAMESPACE``
``sqlite:///<path>``   :class:`SQLiteStore` in that file (``sqlite:////abs/path``); optional
                       ``?synchronous=FULL`` for power-loss durability
``memory://``          :class:`MemoryStore`, nothing persisted
=====================  ==================================================================
"""

from __future__ import annotations

from urllib.parse import parse_qs

from ..config import Settings
from ..errors import ConfigError
from ._keys import LEADER_LEASE, NODE_STATE_TTL_MS, RESOURCE_LIMITS_DOC, job_lease, node_state_doc
from ._pubsub import Subscription
from .base import Batch, Store
from .memory import MemoryStore
from .redis import RedisStore, redact_url
from .sqlite import SQLiteStore

__all__ = [
    # contract
    "Batch",
    "Store",
    "Subscription",
    "open_store",
    # backends
    "MemoryStore",
    "RedisStore",
    "SQLiteStore",
    # names
    "LEADER_LEASE",
    "NODE_STATE_TTL_MS",
    "RESOURCE_LIMITS_DOC",
    "job_lease",
    "node_state_doc",
]


def open_store(settings: Settings) -> Store:
    """The store for ``settings.store_target``, not yet opened (``await store.open()`` or ``async with``)."""
    target = settings.store_target
    var = "MN_REDIS_URL" if not settings.store_url and settings.redis_url else "MN_STORE_URL"
    scheme = target.partition("://")[0].lower()
    if scheme in ("redis", "rediss"):
        return RedisStore(target, namespace=settings.redis_namespace)
    if scheme == "memory":
        return MemoryStore()
    if scheme == "sqlite":
        path, _, query = target[len("sqlite:///") :].partition("?")
        if not target.startswith("sqlite:///") or not path:
            raise ConfigError(
                f"{var} must be sqlite:///<path> with a file path, e.g. sqlite:////var/lib/mn/store.sqlite3"
            )
        options = parse_qs(query)
        unknown = sorted(set(options) - {"synchronous"})
        if unknown:
            raise ConfigError(f"{var}: unknown option(s) {', '.join(unknown)}; the only option is synchronous=FULL")
        return SQLiteStore(path, synchronous=options.get("synchronous", ["NORMAL"])[-1])
    raise ConfigError(
        f"{var} must start with redis://, rediss://, sqlite:/// or memory:// (got {redact_url(target)!r})"
    )
