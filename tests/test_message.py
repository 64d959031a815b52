"""mn-msg/1: envelope defaults, legacy normalisation, derivation, body encoding, serialisation."""

from __future__ import annotations

import gzip
import re

import pytest

from mncore.errors import ExecutionError
from mncore.message import Message, derive, encode_body, from_ndjson, normalize, to_ndjson

ID = re.compile(r"^[A-Za-z0-9_-]{14}$")  # 10 random bytes, URL-safe base64, no padding


def test_envelope_defaults() -> None:
    m = normalize({"payload": {"n": 1}})
    env = m.envelope
    assert env["spec_version"] == "mn-msg/1" and ID.match(env["message_id"]) and ID.match(env["correlation_id"])
    assert env["from"] == "runtime" and env["type"] == "command" and env["class"] == "event"
    assert env["attempt"] == 1 and env["priority"] == 100
    assert env["content_type"] == "application/json" and env["content_encoding"] == "identity"
    assert "causation_id" not in env and "ttl_ms" not in env and "job_id" not in env  # nulls dropped
    assert m.body == {"n": 1} and m.headers == {} and m.artifacts == [] and m.stream is None


def test_legacy_forms() -> None:
    assert normalize({"type": "x", "payload": {"a": 1}}).type == "x"
    assert normalize({"type": "x", "payload": {"a": 1}}).body == {"a": 1}
    assert normalize({"n": 1, "m": 2}).body == {"n": 1, "m": 2}
    m = normalize({"body": [1, 2], "payload": "ignored", "headers": {"h": 1}, "stream": {"seq": 1}, "to": "b"})
    assert m.body == [1, 2] and m.headers == {"h": 1} and m.stream == {"seq": 1} and m.to == "b"
    reserved = normalize({"type": "t", "class": "command", "artifacts": [{"uri": "x"}], "v": 3})
    assert reserved.body == {"v": 3} and reserved.artifacts == [{"uri": "x"}]


def test_spec_form_and_precedence() -> None:
    m = normalize(
        {"envelope": {"type": "given", "class": None, "priority": 5}, "body": {1: {2: "x"}}, "headers": "bad"},
        {"type": "default", "class": "command", "from": "external"},
    )
    assert m.type == "given" and m.envelope["priority"] == 5 and m.sender == "external"
    assert "class" not in m.envelope  # an explicit null drops the key
    assert m.body == {"1": {"2": "x"}} and m.headers == {}


def test_derive_rules() -> None:
    incoming = normalize(
        {
            "envelope": {
                "message_id": "in1",
                "correlation_id": "corr",
                "class": "command",
                "content_type": "text/plain",
            },
            "headers": {"a": 1, "b": 2},
            "artifacts": [{"artifact_id": "z"}],
            "stream": {"seq": 3},
            "body": {},
        }
    )
    plain = derive(incoming, "src", "dst", "t", {"x": 1})
    env = plain.envelope
    assert (env["from"], env["to"], env["type"], env["class"]) == ("src", "dst", "t", "command")
    assert env["correlation_id"] == "corr" and env["causation_id"] == "in1" and env["message_id"] != "in1"
    assert env["content_type"] == "text/plain" and env["attempt"] == 1 and env["priority"] == 100
    assert (
        plain.headers == {"a": 1, "b": 2} and plain.artifacts == [{"artifact_id": "z"}] and plain.stream == {"seq": 3}
    )
    opts = {"class": "event", "headers": {"b": 9}, "stream": None, "correlation_id": "c2", "content_encoding": "gzip"}
    custom = derive(incoming, "src", "dst", "t", 1, opts)
    assert custom.envelope["class"] == "event" and custom.envelope["correlation_id"] == "c2"
    assert custom.headers == {"a": 1, "b": 9} and custom.stream is None
    assert custom.envelope["content_encoding"] == "gzip"
    assert incoming.headers == {"a": 1, "b": 2}  # merged into a copy


@pytest.mark.parametrize(
    ("ctype", "body", "expected"),
    [
        ("application/json", {"a": 1}, b'{"a":1}'),
        ("text/json", "s", b'"s"'),
        ("application/x-ndjson", [{"a": 1}, 2], b'{"a":1}\n2\n'),
        ("application/jsonl", "raw\n", b"raw\n"),
        ("application/ndjson", {"a": 1}, b'{"a":1}\n'),
        ("application/octet-stream", b"\x00\x01", b"\x00\x01"),
        ("application/octet-stream", "txt", b"txt"),
        ("application/octet-stream", {"a": 1}, b'{"a":1}'),
        ("text/csv", [1], b"[1]"),
    ],
)
def test_encode_body_by_content_type(ctype: str, body: object, expected: bytes) -> None:
    assert encode_body(body, ctype, "identity") == expected


def test_encode_body_gzip_and_unknown_encoding() -> None:
    assert gzip.decompress(encode_body([1, 2], "application/x-ndjson", "gzip")) == b"1\n2\n"
    with pytest.raises(ExecutionError, match=r'^unsupported content_encoding "br"$'):
        encode_body({}, None, "br")


def test_bytes_bodies_render_and_round_trip() -> None:
    m = normalize({"body": b"\xff\x00"})
    data = m.to_dict()
    from mncore._util import dumps, loads

    stored = loads(dumps(data))
    assert stored["body"] == {"$bytes": "/wA="}
    assert Message.from_dict(stored).body == b"\xff\x00"
    assert loads(dumps(normalize({"body": b"utf8 text"}).to_dict()))["body"] == "utf8 text"
    assert Message.from_msgpack(m.to_msgpack()).body == b"\xff\x00"


def test_ndjson_round_trip() -> None:
    messages = [normalize({"payload": {"i": i}}) for i in range(3)]
    data = to_ndjson(messages)
    assert data.endswith(b"\n") and data.count(b"\n") == 3
    assert [m.body for m in from_ndjson(data)] == [{"i": 0}, {"i": 1}, {"i": 2}]


def test_summary_fields() -> None:
    m = normalize({"type": "t", "to": "x", "stream": {"eof": True}})
    assert set(m.summary()) == {
        "message_id",
        "from",
        "to",
        "type",
        "class",
        "content_type",
        "content_encoding",
        "stream",
    }
