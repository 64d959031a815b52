"""The ``mn-msg/1`` message: envelope defaults, legacy normalisation, derivation, body encoding.

A message has five parts: ``envelope``, ``headers``, ``body``, ``artifacts``, ``stream``.
:class:`Message` keeps them as plain attributes; :meth:`Message.to_dict` gives the JSON-safe
normalised form (null envelope fields dropped). Builtin agents derive new messages with
:func:`derive`, which is on the hot path and therefore avoids re-normalising bodies.
"""

from __future__ import annotations

import base64
import gzip
from collections.abc import Mapping
from typing import Any

import msgpack
import orjson

from ._util import dumps, inspect, loads, new_id, now_iso
from .errors import ExecutionError, ValidationError

__all__ = [
    "ENVELOPE_KEYS",
    "SPEC_VERSION",
    "Message",
    "derive",
    "encode_body",
    "from_ndjson",
    "normalize",
    "stringify_keys",
    "to_ndjson",
]

SPEC_VERSION = "mn-msg/1"

ENVELOPE_KEYS = (
    "message_id",
    "job_id",
    "from",
    "to",
    "type",
    "class",
    "timestamp",
    "correlation_id",
    "causation_id",
    "attempt",
    "priority",
    "ttl_ms",
    "content_type",
    "content_encoding",
)
_RESERVED = frozenset((*ENVELOPE_KEYS, "headers", "artifacts", "stream", "payload", "body", "envelope"))

#: opts accepted by ``emit`` / ``emit_to`` actions
EMIT_OPTS = frozenset(
    ("class", "headers", "artifacts", "stream", "content_type", "content_encoding", "correlation_id", "causation_id")
)


class Message:
    """A normalised message. Attributes are plain containers; treat them as immutable once sent."""

    __slots__ = ("_fragment", "artifacts", "body", "envelope", "headers", "stream")

    def __init__(
        self,
        envelope: dict[str, Any],
        headers: dict[str, Any] | None = None,
        body: Any = None,
        artifacts: list[Any] | None = None,
        stream: dict[str, Any] | None = None,
    ) -> None:
        self.envelope = envelope
        self.headers = headers if headers is not None else {}
        self.body = body
        self.artifacts = artifacts if artifacts is not None else []
        self.stream = stream
        self._fragment: orjson.Fragment | None = None

    # -- envelope accessors ------------------------------------------------------------------
    @property
    def message_id(self) -> str:
        return self.envelope["message_id"]

    @property
    def type(self) -> str:
        return self.envelope.get("type", "command")

    @property
    def message_class(self) -> str:
        return self.envelope.get("class", "event")

    @property
    def sender(self) -> str:
        return self.envelope.get("from", "runtime")

    @property
    def to(self) -> str | None:
        return self.envelope.get("to")

    @property
    def content_type(self) -> str:
        return self.envelope.get("content_type") or "application/json"

    @property
    def content_encoding(self) -> str:
        return self.envelope.get("content_encoding") or "identity"

    # -- forms -------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The normalised JSON-safe form ``{envelope, headers, body, artifacts, stream}``."""
        return {
            "envelope": self.envelope,
            "headers": self.headers,
            "body": self.body,
            "artifacts": self.artifacts,
            "stream": self.stream,
        }

    def fragment(self) -> orjson.Fragment:
        """The normalised form as pre-encoded JSON, computed once (messages are immutable once sent)."""
        frag = self._fragment
        if frag is None:
            frag = self._fragment = orjson.Fragment(dumps(self.to_dict()))
        return frag

    def __getitem__(self, key: str) -> Any:
        """``message["body"]`` etc. for delegates written against the dict form."""
        if key in ("envelope", "headers", "body", "artifacts", "stream"):
            return getattr(self, key)
        raise KeyError(key)

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def summary(self) -> dict[str, Any]:
        env = self.envelope
        return {
            "message_id": env.get("message_id"),
            "from": env.get("from"),
            "to": env.get("to"),
            "type": env.get("type"),
            "class": env.get("class"),
            "content_type": env.get("content_type"),
            "content_encoding": env.get("content_encoding"),
            "stream": self.stream,
        }

    def to_json(self) -> bytes:
        return dumps(self.to_dict())

    def to_msgpack(self) -> bytes:
        """Binary form: msgpack of the normalised message, bytes bodies carried natively."""
        return msgpack.packb(self.to_dict(), use_bin_type=True)

    @classmethod
    def from_msgpack(cls, data: bytes) -> Message:
        return cls.from_dict(msgpack.unpackb(data, raw=False))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Message:
        """Rebuild a message from its normalised (stored) form; ``{"$bytes": ...}`` bodies become bytes."""
        return cls(
            dict(data.get("envelope") or {}),
            dict(data.get("headers") or {}),
            decode_stored_body(data.get("body")),
            list(data.get("artifacts") or []),
            data.get("stream"),
        )

    def copy_to(self, job_id: str, to: str) -> Message:
        env = dict(self.envelope)
        env["job_id"] = job_id
        env["to"] = to
        return Message(env, self.headers, self.body, self.artifacts, self.stream)

    def __repr__(self) -> str:
        return (
            f"Message(type={self.type!r}, from={self.sender!r}, to={self.to!r}, id={self.envelope.get('message_id')!r})"
        )


def decode_stored_body(body: Any) -> Any:
    if isinstance(body, dict) and len(body) == 1 and isinstance(body.get("$bytes"), str):
        try:
            return base64.b64decode(body["$bytes"], validate=True)
        except ValueError:
            return body
    return body


def stringify_keys(value: Any) -> Any:
    """Convert mapping keys to strings, recursively (tuples become lists)."""
    if isinstance(value, Mapping):
        return {k if isinstance(k, str) else _key(k): stringify_keys(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [stringify_keys(v) for v in value]
    return value


def _key(k: Any) -> str:
    if k is None:
        return "nil"
    if isinstance(k, bool):
        return "true" if k else "false"
    return str(k)


def normalize(value: Any, defaults: Mapping[str, Any] | None = None) -> Message:
    """Normalise a spec-form or legacy-form mapping into a :class:`Message`.

    Values present in the input win over ``defaults``; envelope keys whose value is null are
    dropped. A non-mapping value becomes the body of a message with the defaults.
    """
    if isinstance(value, Message):
        value = value.to_dict()
    if not isinstance(value, Mapping):
        supplied: dict[str, Any] = {}
        body: Any = stringify_keys(value)
        headers: Any = {}
        artifacts: Any = []
        stream: Any = None
    elif "envelope" in value:
        raw_env = value.get("envelope")
        supplied = dict(raw_env) if isinstance(raw_env, Mapping) else {}
        body = stringify_keys(value.get("body"))
        headers, artifacts, stream = value.get("headers"), value.get("artifacts"), value.get("stream")
    else:
        supplied = {k: value[k] for k in ENVELOPE_KEYS if k in value}
        if "body" in value:
            body = value["body"]
        elif "payload" in value:
            body = value["payload"]
        else:
            body = {k: v for k, v in value.items() if k not in _RESERVED}
        body = stringify_keys(body)
        headers, artifacts, stream = value.get("headers"), value.get("artifacts"), value.get("stream")

    env = _envelope(supplied, defaults or {})
    return Message(
        env,
        stringify_keys(headers) if isinstance(headers, Mapping) else {},
        decode_stored_body(body),
        [stringify_keys(a) for a in artifacts if isinstance(a, Mapping)] if isinstance(artifacts, list) else [],
        stringify_keys(stream) if isinstance(stream, Mapping) else None,
    )


def _envelope(supplied: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    env: dict[str, Any] = {
        "spec_version": SPEC_VERSION,
        "message_id": None,
        "job_id": None,
        "from": "runtime",
        "to": None,
        "type": "command",
        "class": "event",
        "timestamp": None,
        "correlation_id": None,
        "causation_id": None,
        "attempt": 1,
        "priority": 100,
        "content_type": "application/json",
        "content_encoding": "identity",
    }
    env.update(defaults)
    for key, val in supplied.items():
        env[str(key)] = stringify_keys(val)
    if "spec_version" in supplied or "spec_version" in defaults:
        pass
    if env.get("message_id") is None:
        env["message_id"] = new_id()
    if env.get("timestamp") is None:
        env["timestamp"] = now_iso()
    if env.get("correlation_id") is None:
        env["correlation_id"] = new_id()
    return {k: v for k, v in env.items() if v is not None}


def derive(
    incoming: Message,
    sender: str,
    to: str,
    msg_type: str,
    body: Any,
    opts: Mapping[str, Any] | None = None,
) -> Message:
    """A new message caused by ``incoming`` (messages-and-routing.md §7.3). Hot path: no copying of the body."""
    ienv = incoming.envelope
    if not opts:
        env = {
            "spec_version": SPEC_VERSION,
            "message_id": new_id(),
            "job_id": ienv.get("job_id"),
            "from": sender,
            "to": to,
            "type": msg_type,
            "class": ienv.get("class", "event"),
            "timestamp": now_iso(),
            "correlation_id": ienv.get("correlation_id"),
            "causation_id": ienv.get("message_id"),
            "attempt": 1,
            "priority": 100,
            "content_type": ienv.get("content_type", "application/json"),
            "content_encoding": ienv.get("content_encoding", "identity"),
        }
        if env["correlation_id"] is None:
            del env["correlation_id"]
        return Message(env, incoming.headers, body, incoming.artifacts, incoming.stream)
    env = {
        "spec_version": SPEC_VERSION,
        "message_id": new_id(),
        "job_id": ienv.get("job_id"),
        "from": sender,
        "to": to,
        "type": msg_type,
        "class": opts.get("class") or ienv.get("class", "event"),
        "timestamp": now_iso(),
        "correlation_id": opts.get("correlation_id") or ienv.get("correlation_id"),
        "causation_id": opts.get("causation_id") or ienv.get("message_id"),
        "attempt": 1,
        "priority": 100,
        "content_type": opts.get("content_type") or ienv.get("content_type", "application/json"),
        "content_encoding": opts.get("content_encoding") or ienv.get("content_encoding", "identity"),
    }
    headers = incoming.headers
    extra = opts.get("headers")
    if isinstance(extra, Mapping) and extra:
        headers = {**headers, **stringify_keys(extra)}
    artifacts = opts["artifacts"] if isinstance(opts.get("artifacts"), list) else incoming.artifacts
    stream = opts.get("stream", incoming.stream)
    return Message({k: v for k, v in env.items() if v is not None}, headers, body, artifacts, stream)


# ---- body encoding for workers (messages-and-routing.md §4) ----------------------------------

_JSON_TYPES = frozenset(("application/json", "text/json"))
_NDJSON_TYPES = frozenset(("application/x-ndjson", "application/jsonl", "application/ndjson"))


def encode_body(body: Any, content_type: str | None, content_encoding: str | None) -> bytes:
    """The body bytes given to payloads: by ``content_type``, then ``content_encoding``."""
    ctype = (content_type or "application/json").split(";", 1)[0].strip().lower()
    if ctype in _NDJSON_TYPES:
        if isinstance(body, (bytes, bytearray)):
            data = bytes(body)
        elif isinstance(body, str):
            data = body.encode("utf-8")
        elif isinstance(body, list):
            data = b"".join(dumps(item) + b"\n" for item in body)
        else:
            data = dumps(body) + b"\n"
    elif ctype == "application/octet-stream":
        if isinstance(body, (bytes, bytearray)):
            data = bytes(body)
        elif isinstance(body, str):
            data = body.encode("utf-8")
        else:
            data = dumps(body)
    else:
        data = dumps(body)
    encoding = content_encoding if content_encoding is not None else "identity"
    if encoding == "identity":
        return data
    if encoding == "gzip":
        return gzip.compress(data, mtime=0)
    raise ExecutionError(f"unsupported content_encoding {inspect(encoding)}")


# ---- serialisation --------------------------------------------------------------------------


def to_ndjson(messages: list[Message]) -> bytes:
    """One normalised message per line, trailing newline."""
    return b"".join(m.to_json() + b"\n" for m in messages)


def from_ndjson(data: bytes | str) -> list[Message]:
    text = data.decode("utf-8") if isinstance(data, (bytes, bytearray)) else data
    out = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(Message.from_dict(loads(line)))
        except ValueError as exc:
            raise ValidationError(f"invalid NDJSON message on line {lineno}: {exc}") from None
    return out
