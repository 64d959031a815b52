"""The payload's environment, placeholders and command line (executor-contract.md §5, §6)."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import sys
from collections.abc import Mapping
from typing import Any

from .._util import dumps_str
from ..errors import ExecutionError
from .request import RunRequest
from .workspace import BODY_FILE, CONTEXT_FILE, INPUT_FILE, MESSAGE_FILE, Workspace

__all__ = [
    "BEACON_PREFIX",
    "MINIMAL_ENV",
    "build_command",
    "build_env",
    "placeholder_values",
    "runtime_environ",
    "stringify",
    "substitute",
    "truthy",
]

BEACON_PREFIX = "__MN_AGENT_BEACON__"
#: base environment of the bwrap and docker runners (only declared variables enter a sandbox)
MINIMAL_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/tmp",
    "LANG": "C.UTF-8",
    "TMPDIR": "/tmp",
}
_PLACEHOLDERS = ("input_file", "context_file", "message_file", "body_file", "workdir", "job_id", "agent_id")
_PYTHON_RE = re.compile(r"python(?:3(?:\.\d+)?)?")
_PYTHON_LEAD_RE = re.compile(r"\s*(python(?:3(?:\.\d+)?)?)(?=\s|$)")
_TRUE = frozenset(("1", "true", "yes", "on"))


_environ_cache: list[Any] = [None, {}]


def runtime_environ() -> dict[str, str]:
    """A copy of the runtime's own environment (the host runner's base environment).

    Decoding ``os.environ`` item by item costs more than spawning a small process here, so the
    decoded copy is cached and reused while the raw environment is unchanged (compared in C).
    """
    raw = getattr(os.environ, "_data", None)
    if not isinstance(raw, dict):
        return dict(os.environ)
    snapshot = tuple(raw.items())
    if snapshot != _environ_cache[0]:
        _environ_cache[0], _environ_cache[1] = snapshot, dict(os.environ)
    return dict(_environ_cache[1])


def truthy(value: Any) -> bool:
    """Config flag: ``true``, non-zero numbers and the strings 1/true/yes/on."""
    if isinstance(value, str):
        return value.strip().lower() in _TRUE
    return bool(value) and not isinstance(value, (dict, list))


def stringify(value: Any) -> str:
    """``config.environment`` value as text: strings as is, ``true``/``false``, numbers, JSON otherwise."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, (int, float)):
        return repr(value)
    return dumps_str(value)


def build_env(request: RunRequest, ws: Workspace, node_name: str, base: Mapping[str, str]) -> dict[str, str]:
    """Base → runtime variables (both spellings) → ``config.environment`` → ``pass_env``."""
    config = request.config
    env = dict(base)
    names = {
        "INPUT_FILE": ws.seen(INPUT_FILE),
        "CONTEXT_FILE": ws.seen(CONTEXT_FILE),
        "MESSAGE_FILE": ws.seen(MESSAGE_FILE),
        "BODY_FILE": ws.seen(BODY_FILE),
        "BODY_CONTENT_TYPE": ws.content_type,
        "BODY_CONTENT_ENCODING": ws.content_encoding,
        "AGENT_TYPE": request.agent_type or "executor",
        "AGENT_TEMPLATE": request.template_type or "generic",
        "JOB_ID": request.job_id,
        "AGENT_ID": request.agent_id,
        "WORKDIR": ws.workdir,
    }
    for key, value in names.items():
        env["MN_" + key] = value
        env["MIRROR_NEURON_" + key] = value
    env["MN_EXECUTION_NODE"] = node_name
    if truthy(config.get("beacon_enabled")) or truthy(config.get("agent_beacon_required")):
        env.update(_beacon_vars(request))
    extra = config.get("environment")
    if extra:
        if not isinstance(extra, Mapping):
            raise ExecutionError("config.environment must be an object of NAME: value pairs")
        for key, value in extra.items():
            env[str(key)] = stringify(value)
    passed = config.get("pass_env")
    if passed:
        if not isinstance(passed, list):
            raise ExecutionError("config.pass_env must be a list of variable names")
        for key in passed:
            inherited = os.environ.get(str(key))
            if inherited is not None:
                env[str(key)] = inherited
    return env


def _beacon_vars(request: RunRequest) -> dict[str, str]:
    config = request.config
    headers = request.message.get("headers") or {}
    step = headers.get("mn.workflow.step_id") or request.agent_id
    return {
        "MN_AGENT_BEACON_STDOUT_PREFIX": BEACON_PREFIX,
        "MN_AGENT_BEACON_INTERVAL_MS": str(int(config.get("beacon_interval_ms") or 15000)),
        "MN_AGENT_BEACON_TIMEOUT_MS": str(int(config.get("beacon_timeout_ms") or 45000)),
        "MN_AGENT_BEACON_REQUIRED": "1" if truthy(config.get("agent_beacon_required")) else "0",
        "MN_AGENT_BEACON_JOB_ID": request.job_id,
        "MN_AGENT_BEACON_AGENT_ID": request.agent_id,
        "MN_AGENT_BEACON_ATTEMPT": str(request.attempt),
        "MN_AGENT_BEACON_STEP": str(step),
        "MN_AGENT_BEACON_SOURCE": "agent",
    }


def placeholder_values(request: RunRequest, ws: Workspace) -> dict[str, str]:
    return {
        "input_file": ws.seen(INPUT_FILE),
        "context_file": ws.seen(CONTEXT_FILE),
        "message_file": ws.seen(MESSAGE_FILE),
        "body_file": ws.seen(BODY_FILE),
        "workdir": ws.workdir,
        "job_id": request.job_id,
        "agent_id": request.agent_id,
    }


def substitute(text: str, values: Mapping[str, str]) -> str:
    """Replace ``{{name}}`` first, then ``{name}``, for the listed names only."""
    if "{" not in text:
        return text
    for name in _PLACEHOLDERS:
        if name in values:
            text = text.replace("{{" + name + "}}", values[name])
    for name in _PLACEHOLDERS:
        if name in values:
            text = text.replace("{" + name + "}", values[name])
    return text


def build_command(
    command: Any,
    values: Mapping[str, str],
    *,
    max_length: int,
    search_path: str | None = None,
    notes: list[str] | None = None,
) -> list[str] | None:
    """The argv to execute, or ``None`` when no command is configured.

    A list is executed directly, a string through ``bash -lc``. ``search_path`` enables the
    python fallback: ``python``/``python3``/``python3.N`` not found on it → ``sys.executable``
    (a note is appended to ``notes``). Raises :class:`ExecutionError` for a bad form or length.
    """
    if command is None or command == "" or command == []:
        return None
    if isinstance(command, str):
        text = substitute(command, values)
        _check_length(len(text), max_length)
        if search_path is not None:
            text = _python_fallback_text(text, search_path, notes)
        return ["bash", "-lc", text]
    if not isinstance(command, list):
        raise ExecutionError("config.command must be a string (run with bash -lc) or a list of arguments")
    argv = [substitute(item if isinstance(item, str) else stringify(item), values) for item in command]
    _check_length(sum(len(a) for a in argv) + len(argv) - 1, max_length)
    if search_path is not None and _PYTHON_RE.fullmatch(argv[0]) and _missing(argv[0], search_path):
        _note_python(argv[0], notes)
        argv[0] = sys.executable
    return argv


def _check_length(length: int, max_length: int) -> None:
    if length > max_length:
        raise ExecutionError(f"command exceeds MN_MAX_COMMAND_LENGTH ({length} > {max_length})")


def _missing(name: str, search_path: str) -> bool:
    return shutil.which(name, path=search_path) is None


def _note_python(name: str, notes: list[str] | None) -> None:
    if notes is not None:
        notes.append(f"{name} not found on PATH; using the runtime's interpreter {sys.executable}")


def _python_fallback_text(text: str, search_path: str, notes: list[str] | None) -> str:
    match = _PYTHON_LEAD_RE.match(text)
    if match is None or not _missing(match.group(1), search_path):
        return text
    _note_python(match.group(1), notes)
    return text[: match.start(1)] + shlex.quote(sys.executable) + text[match.end(1) :]
