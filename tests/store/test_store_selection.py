"""open_store() selection by URL, and Batch accumulation."""

from __future__ import annotations

from pathlib import Path

import pytest

from mncore.config import Settings
from mncore.errors import ConfigError
from mncore.store import Batch, MemoryStore, RedisStore, SQLiteStore, open_store


def settings(tmp_path: Path, **kwargs: str) -> Settings:
    return Settings(data_dir=str(tmp_path), **kwargs)  # type: ignore[arg-type]


def test_default_is_sqlite_in_the_data_dir(tmp_path: Path) -> None:
    store = open_store(settings(tmp_path))
    assert isinstance(store, SQLiteStore)
    assert store.path == tmp_path / "store.sqlite3"
    assert store.synchronous == "NORMAL"


@pytest.mark.parametrize(
    ("url", "path"),
    [("sqlite:////var/lib/mn/store.sqlite3", "/var/lib/mn/store.sqlite3"), ("sqlite:///rel/s.db", "rel/s.db")],
)
def test_sqlite_urls(tmp_path: Path, url: str, path: str) -> None:
    store = open_store(settings(tmp_path, store_url=url))
    assert isinstance(store, SQLiteStore)
    assert store.path == Path(path)


def test_sqlite_synchronous_option(tmp_path: Path) -> None:
    store = open_store(settings(tmp_path, store_url="sqlite:////x/s.db?synchronous=full"))
    assert isinstance(store, SQLiteStore)
    assert store.synchronous == "FULL"
    with pytest.raises(ConfigError, match="MN_STORE_URL: unknown option"):
        open_store(settings(tmp_path, store_url="sqlite:////x/s.db?mode=ro"))
    with pytest.raises(ConfigError, match="MN_STORE_URL must be sqlite:///<path>"):
        open_store(settings(tmp_path, store_url="sqlite://"))


@pytest.mark.parametrize("url", ["redis://localhost:6379/0", "rediss://:pw@example:6380/1"])
def test_redis_urls(tmp_path: Path, url: str) -> None:
    store = open_store(settings(tmp_path, store_url=url, redis_namespace="ns1"))
    assert isinstance(store, RedisStore)
    assert store.keys.jobs() == "ns1:jobs"
    assert "pw" not in store.url


def test_redis_url_setting_is_used_without_store_url(tmp_path: Path) -> None:
    assert isinstance(open_store(settings(tmp_path, redis_url="redis://h:1")), RedisStore)
    with pytest.raises(ConfigError, match="MN_REDIS_URL must start with"):
        open_store(settings(tmp_path, redis_url="http://h:1"))


def test_memory_and_unknown_schemes(tmp_path: Path) -> None:
    assert isinstance(open_store(settings(tmp_path, store_url="memory://")), MemoryStore)
    with pytest.raises(ConfigError, match=r"MN_STORE_URL must start with redis://, rediss://, sqlite:/// or memory://"):
        open_store(settings(tmp_path, store_url="postgres://u:secret@h/db"))


# ---- Batch ---------------------------------------------------------------------------------------


def ev(n: int) -> dict[str, int]:
    return {"n": n}


def test_batch_merge_keeps_latest_records_and_joins_event_runs() -> None:
    batch = Batch()
    assert batch.is_empty()
    batch.add_job({"job_id": "j", "v": 1})
    batch.add_agent("j", {"agent_id": "a", "v": 1})
    batch.add_events("j", 3, [ev(3), ev(4)])
    later = Batch()
    later.add_job({"job_id": "j", "v": 2})
    later.add_agent("j", {"agent_id": "a", "v": 2})
    later.add_agent("j", {"agent_id": "b", "v": 1})
    later.add_events("j", 5, [ev(5)])
    later.add_events("k", 0, [ev(0)])
    batch.merge(later)
    assert batch.jobs == {"j": {"job_id": "j", "v": 2}}
    assert batch.agents == {"j": {"a": {"agent_id": "a", "v": 2}, "b": {"agent_id": "b", "v": 1}}}
    assert batch.events == {"j": (3, [ev(3), ev(4), ev(5)]), "k": (0, [ev(0)])}
    assert not batch.is_empty()


def test_batch_event_runs_may_overlap_or_precede_but_not_leave_a_gap() -> None:
    events = [ev(n) for n in range(10)]
    batch = Batch()
    batch.add_events("j", 4, events[4:6])
    batch.add_events("j", 5, events[5:8])  # overlaps
    batch.add_events("j", 2, events[2:4])  # touches from before
    batch.add_events("j", 3, events[3:5])  # inside
    assert batch.events["j"] == (2, events[2:8])
    with pytest.raises(ValueError, match="does not touch"):
        batch.add_events("j", 9, events[9:])
    with pytest.raises(ValueError, match="does not touch"):
        batch.add_events("j", 0, events[0:1])


def test_batch_does_not_alias_the_callers_event_list() -> None:
    events = [ev(0)]
    batch = Batch()
    batch.add_events("j", 0, events)
    batch.add_events("j", 1, [ev(1)])
    assert events == [ev(0)]
