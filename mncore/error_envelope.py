"""``mn.error.v1``: the error envelope carried by failed jobs and by every event ``error`` field.

See operations.md §7.4. ``build(reason, ...)`` turns a reason (text, mapping, exception) into
the envelope; a reason that already is a valid envelope is returned normalised, fields kept.
"""

from __future__ import annotations

import re
from typing import Any

from ._util import dumps, new_id, now_iso

__all__ = ["build", "is_envelope", "message_of"]

SCHEMA = "mn.error.v1"
_DESCS = {
    "runtime.job_runner.failed": "Job runner failed",
    "runtime.job.failed": "Job failed",
    "workflow.step.heartbeat_timeout": "Workflow step heartbeat timed out",
    "workflow.step.timeout": "Workflow step timed out",
    "workflow.step.retry_exhausted": "Workflow step retries exhausted",
    "scheduler.lease_unavailable": "Scheduler lease unavailable",
    "scheduler.dispatch.failed": "Schedule dispatch failed",
    "runtime.failure": "Runtime failure",
}
_SECRET_KEY = re.compile(r"authorization|cookie|secret|token|password|api_key|apikey|private_key|credential", re.I)
_DEFAULT_LINKS = [
    {"rel": "errors", "artifact_id": "errors_jsonl"},
    {"rel": "events", "artifact_id": "events_jsonl"},
    {"rel": "logs", "artifact_id": "logs_jsonl"},
]
_MAX_MESSAGE = 2048
_MAX_STRING = 2048
_MAX_ENVELOPE = 16 * 1024


def is_envelope(value: Any) -> bool:
    return isinstance(value, dict) and value.get("schema_version") == SCHEMA and "code" in value


def message_of(reason: Any) -> str:
    """The plain error text of a reason (a string, a mapping with ``error``/``message``, an exception)."""
    if isinstance(reason, str):
        return reason
    if isinstance(reason, BaseException):
        return str(reason) or type(reason).__name__
    if isinstance(reason, dict):
        if is_envelope(reason):
            return str(reason.get("details", {}).get("message") or reason.get("desc") or "")
        for key in ("error", "message", "reason"):
            inner = reason.get(key)
            if isinstance(inner, str):
                return inner
            if isinstance(inner, dict):
                return message_of(inner)
    return dumps(reason).decode("utf-8") if reason is not None else "Runtime failure"


def _code(reason: Any, text: str, component: str | None) -> str:
    if isinstance(reason, dict):
        for key in ("code", "error_code"):
            if isinstance(reason.get(key), str) and reason[key]:
                return str(reason[key])[:128]
    if component == "job_runner":
        return "runtime.job_runner.failed"
    if component == "job_coordinator":
        return "runtime.job.failed"
    low = text.lower()
    if "heartbeat" in low:
        return "workflow.step.heartbeat_timeout"
    if "deadline" in low or "timeout" in low or "timed out" in low:
        return "workflow.step.timeout"
    if "retry" in low or "exhaust" in low:
        return "workflow.step.retry_exhausted"
    if "lease" in low:
        return "scheduler.lease_unavailable"
    return "runtime.failure"


def _category(code: str, text: str) -> str:
    low = text.lower()
    if "timeout" in code or any(w in low for w in ("deadline", "timeout", "heartbeat")):
        return "timeout"
    if "lease" in code or code.startswith("scheduler"):
        return "scheduler"
    if "validation" in low or "invalid" in low:
        return "validation"
    if "cancel" in low:
        return "cancelled"
    return "runtime"


def _reason_type(reason: Any) -> str:
    if isinstance(reason, str):
        return "string"
    if isinstance(reason, dict):
        return "map"
    if isinstance(reason, (list, tuple)):
        return "list"
    return "term"


def _redact(value: Any, depth: int = 0) -> Any:
    if isinstance(value, dict):
        return {k: "[REDACTED]" if _SECRET_KEY.search(str(k)) else _redact(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redact(v, depth + 1) for v in list(value)[:25]]
    if isinstance(value, str) and len(value) > _MAX_STRING:
        return {"truncated": True, "chars": len(value), "preview": value[:256]}
    if isinstance(value, (bytes, bytearray)):
        return {"truncated": True, "chars": len(value), "preview": ""}
    return value


def build(reason: Any, *, component: str | None = None, **context: Any) -> dict[str, Any]:
    """The ``mn.error.v1`` envelope for ``reason``; ``context`` adds detail keys (agent_id, node, ...)."""
    if is_envelope(reason):
        env = dict(reason)
        env.setdefault("severity", "ERROR")
        env.setdefault("occurred_at", now_iso())
        env.setdefault("event_id", f"evt_{new_id()}")
        return env
    text = message_of(reason)
    code = _code(reason, text, component)
    retryable: bool
    if isinstance(reason, dict) and isinstance(reason.get("retryable"), bool):
        retryable = bool(reason["retryable"])
    elif "timeout" in code:
        retryable = False
    else:
        retryable = any(w in code for w in ("lease", "temporary", "unavailable"))
    details: dict[str, Any] = {
        "message": text[:_MAX_MESSAGE],
        "category": _category(code, text),
        "retryable": retryable,
        "reason_type": _reason_type(reason),
    }
    if component:
        details["component"] = component
    details.update({k: v for k, v in context.items() if v is not None})
    if isinstance(reason, dict):
        for key, value in reason.items():
            details.setdefault(str(key), value)
    desc = _DESCS.get(code) if code != "runtime.failure" else None
    if desc is None:
        desc = (text[:1].upper() + text[1:])[:160] if text else "Runtime failure"
    envelope = {
        "schema_version": SCHEMA,
        "code": code,
        "desc": desc,
        "details": _redact(details),
        "severity": "ERROR",
        "occurred_at": now_iso(),
        "event_id": f"evt_{new_id()}",
        "links": list(_DEFAULT_LINKS),
    }
    if len(dumps(envelope)) > _MAX_ENVELOPE:
        envelope["details"] = {"message": details["message"], "truncated": True}
    return envelope
