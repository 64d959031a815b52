"""The ``store`` fixture: every conformance test runs against memory, SQLite and a real Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from mncore.store import MemoryStore, RedisStore, SQLiteStore, Store

StoreFactory = Callable[..., Awaitable[Store]]

BACKENDS = ["memory", "sqlite", pytest.param("redis", marks=pytest.mark.redis)]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def store_factory(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[StoreFactory]:
    """Open stores of the test's backend; every store it makes shares one location (file / namespace)."""
    stores: list[Store] = []
    if backend == "redis":
        url = request.getfixturevalue("redis_url")
        namespace = request.getfixturevalue("redis_namespace")

    async def make(**kwargs: Any) -> Store:
        store: Store
        if backend == "memory":
            store = MemoryStore(**kwargs)
        elif backend == "sqlite":
            store = SQLiteStore(tmp_path / "data" / "store.sqlite3", **kwargs)
        else:
            store = RedisStore(url, namespace=namespace, **kwargs)
        await store.open()
        stores.append(store)
        return store

    yield make
    for store in stores:
        await store.close()


@pytest.fixture
async def store(store_factory: StoreFactory) -> Store:
    return await store_factory()
