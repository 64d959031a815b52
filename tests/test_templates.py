from __future__ import annotations

import copy
from typing import Any

import pytest

from mncore import templates as t
from mncore._util import dumps, loads
from mncore.errors import ValidationError


def test_defaults_merges_extra() -> None:
    node = {"node_id": "a", "type": "map", "config": {"k": 1}}
    assert t.defaults(node) == {"config": {"k": 1}, "template": "map"}
    assert t.defaults({"type": None}, {"template": "x", "n": 2}) == {"config": {}, "template": "x", "n": 2}
    assert t.defaults({"type": ""}) == {"config": {}, "template": "generic"}


@pytest.mark.parametrize(
    ("count", "on_message", "after", "expected"),
    [
        (1, True, None, True),
        (0, True, None, True),
        (1, False, None, False),
        (1, "true", None, False),  # only the boolean true counts
        (1, False, 2, False),
        (2, False, 2, True),
        (3, False, 2, True),
        (5, False, 0, False),
        (5, False, -1, False),
        (5, False, "2", False),
        (5, False, 2.0, False),
        (5, False, True, False),
    ],
)
def test_should_complete(count: int, on_message: Any, after: Any, expected: bool) -> None:
    assert t.should_complete(count, on_message, after) is expected


def test_map_counts_and_does_not_mutate() -> None:
    state = t.map_init()
    assert state == {"processed": 0}
    new_state, actions = t.map_transform(state)
    assert state == {"processed": 0}
    assert new_state == {"processed": 1}
    assert actions == [("event", "map_transformed", {"processed": 1})]
    new_state, actions = t.map_transform(new_state, event_type="row_done")
    assert actions == [("event", "row_done", {"processed": 2})]


def test_reduce_init_reads_config() -> None:
    assert t.reduce_init({"complete_after": 3}) == {"messages": [], "complete_on_message": False, "complete_after": 3}
    assert t.reduce_init(None, complete_on_message=True)["complete_on_message"] is True


def test_reduce_collects_then_completes_after_n() -> None:
    state = t.reduce_init({"complete_after": 2})
    snapshot = copy.deepcopy(state)
    state1, actions = t.reduce_collect(state, {"v": 1})
    assert state == snapshot
    assert state1["messages"] == [{"v": 1}]
    assert actions == [("event", "reducer_received", {"count": 1})]
    state2, actions = t.reduce_collect(state1, None, [("emit", "seen", {})])
    assert state1["messages"] == [{"v": 1}]
    assert state2["messages"] == [{"v": 1}, {}]
    result = {"messages": [{"v": 1}, {}], "count": 2, "last_message": {}}
    assert actions == [
        ("event", "reducer_received", {"count": 2}),
        ("emit", "seen", {}),
        ("complete_job", result),
    ]
    assert t.reduce_result(state2) == result
    assert loads(dumps(state2)) == state2


def test_reduce_completes_on_first_message_when_asked() -> None:
    state = t.reduce_init({}, complete_on_message=True)
    _, actions = t.reduce_collect(state, "body")
    assert actions[-1] == ("complete_job", {"messages": ["body"], "count": 1, "last_message": "body"})


def test_reduce_without_completion_rule_never_completes() -> None:
    state = t.reduce_init({"complete_after": "2"})
    for _ in range(3):
        state, actions = t.reduce_collect(state, 1)
        assert [a[0] for a in actions] == ["event"]
    assert t.reduce_result(t.reduce_init()) == {"messages": [], "count": 0, "last_message": None}


def test_stream_observes_chunks() -> None:
    state = t.stream_init({"stream_id": "s1"})
    assert state == {"chunks_received": 0, "items_seen": 0, "stream_open": False, "stream_id": "s1"}
    state, actions = t.stream_observe(state, 3)
    state, actions = t.stream_observe(state, 0)
    assert state["chunks_received"] == 2
    assert state["items_seen"] == 3
    assert actions == [("event", "stream_chunk_processed", {"chunks_received": 2, "items_seen": 3})]
    assert t.stream_init()["stream_id"] is None


@pytest.mark.parametrize("bad", [-1, 1.5, "3", True, None])
def test_stream_rejects_bad_item_count(bad: Any) -> None:
    with pytest.raises(ValidationError, match="stream chunk item count"):
        t.stream_observe(t.stream_init(), bad)


def test_batch_buffers_and_flushes() -> None:
    state = t.batch_init({"batch_size": 2})
    assert state == {"batch": [], "batch_size": 2, "flushed_batches": 0}
    state, flushed, actions = t.batch_push(state, "a")
    assert flushed is None
    assert state["batch"] == ["a"]
    assert actions == [("event", "batch_buffered", {"size": 1})]
    before = copy.deepcopy(state)
    state, flushed, actions = t.batch_push(state, "b")
    assert before["batch"] == ["a"]
    assert flushed == ["a", "b"]
    assert state == {"batch": [], "batch_size": 2, "flushed_batches": 1}
    assert actions == [("event", "batch_buffered", {"size": 2, "flushed_batches": 1})]
    state, flushed, _ = t.batch_push(state, "c")
    assert (flushed, state["batch"], state["flushed_batches"]) == (None, ["c"], 1)


def test_batch_default_size_is_ten() -> None:
    state = t.batch_init({})
    assert state["batch_size"] == 10
    for i in range(9):
        state, flushed, _ = t.batch_push(state, i)
        assert flushed is None
    state, flushed, _ = t.batch_push(state, 9)
    assert flushed == list(range(10))
    assert t.batch_init(None)["batch_size"] == 10


@pytest.mark.parametrize("bad", [0, -3, 2.5, "10", False])
def test_batch_rejects_bad_size(bad: Any) -> None:
    with pytest.raises(ValidationError, match=r"config\.batch_size must be an integer > 0"):
        t.batch_init({"batch_size": bad})
