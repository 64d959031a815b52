"""The ``python`` runner: call ``config.python_callable`` ("module:function") in this process.

The callable gets one dict ``{input, message, context, body, env, workdir}`` and may return a
mapping (structured output when it has a §9 key, else its JSON text is the stdout), a string
(the stdout) or ``None`` (empty stdout); a coroutine is awaited. An exception fails the attempt
with ``exit_code`` 1 and the traceback as ``stderr``. A workspace is staged as for the other
runners. A synchronous call cannot be interrupted here: on timeout or cancel the pool worker
that runs it is killed and replaced by its supervisor; awaitables are cancelled in place.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import inspect as pyinspect
import os
import resource
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from typing import Any

from ..._util import dumps
from ...errors import ExecutionError
from ..beacons import BeaconMonitor
from ..environment import build_env
from ..output import STRUCTURED_KEYS, Redactor, StreamCapture, parse_structured
from ..request import AttemptOutcome, RunRequest
from ..workspace import Workspace, host_runner_name, stage
from .base import Emit, Runner, build_outcome, max_output_bytes, timeout_seconds

__all__ = ["PythonRunner", "resolve_callable"]

_import_lock = threading.Lock()
_callables: dict[tuple[str | None, str], Callable[..., Any]] = {}


class CallableError(Exception):
    """Raised when ``python_callable`` cannot be resolved (reported as the attempt's error)."""


def resolve_callable(spec: str, payloads_path: str | None) -> Callable[..., Any]:
    """``"module:function"`` (function may be dotted) with ``payloads_path`` first on ``sys.path``;
    cached per ``(payloads_path, spec)``."""
    key = (payloads_path, spec)
    fn = _callables.get(key)
    if fn is not None:
        return fn
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise CallableError(f"config.python_callable must look like 'module:function' (got {spec!r})")
    with _import_lock:
        if payloads_path and sys.path[:1] != [payloads_path]:
            if payloads_path in sys.path:
                sys.path.remove(payloads_path)
            sys.path.insert(0, payloads_path)
        try:
            module = _import(module_name, payloads_path)
        except Exception as exc:
            raise CallableError(f"python_callable {spec}: cannot import {module_name}: {exc!r}") from exc
    target: Any = module
    for part in attr.split("."):
        target = getattr(target, part, None)
        if target is None:
            raise CallableError(f"python_callable {spec}: {module_name} has no attribute {attr}")
    if not callable(target):
        raise CallableError(f"python_callable {spec} is not callable")
    _callables[key] = target
    return target


def _import(name: str, payloads_path: str | None) -> Any:
    module = importlib.import_module(name)
    if not payloads_path or "." in name:
        return module
    origin = getattr(module, "__file__", None) or ""
    root = os.path.realpath(payloads_path) + os.sep
    if origin and not os.path.realpath(origin).startswith(root):
        # another bundle (or the runtime) already owns this top-level name: load ours privately
        candidate = next(
            (p for p in (f"{payloads_path}/{name}.py", f"{payloads_path}/{name}/__init__.py") if os.path.exists(p)),
            None,
        )
        if candidate is not None:
            private = f"_mn_payload_{abs(hash(payloads_path)):x}_{name}"
            spec = importlib.util.spec_from_file_location(private, candidate)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules[private] = module
            spec.loader.exec_module(module)
    return module


class PythonRunner(Runner):
    name = "python"

    async def run(self, request: RunRequest, emit: Emit) -> AttemptOutcome:
        started = time.monotonic()
        config = request.config
        name = host_runner_name(config, request.job_id, request.agent_id)
        spec = config.get("python_callable")
        if not spec or not isinstance(spec, str):
            return self.start_error(request, name, "python runner requires config.python_callable")
        try:
            fn = resolve_callable(spec, request.payloads_path)
            ws = stage(request, self.name, name, self.settings.temp_dir)
        except (CallableError, ExecutionError, OSError) as exc:
            return self.start_error(request, name, str(exc))
        try:
            return await self._call(request, emit, fn, ws, started)
        finally:
            ws.remove()

    async def _call(
        self, request: RunRequest, emit: Emit, fn: Callable[..., Any], ws: Workspace, started: float
    ) -> AttemptOutcome:
        node = self.node_name(request)
        try:
            env = build_env(request, ws, node, {})
            timeout = timeout_seconds(request.config)
            cap = max_output_bytes(request.config, self.settings)
        except ExecutionError as exc:
            return self.start_error(request, ws.name, str(exc))
        payload = {
            "input": ws.body,
            "message": request.message,
            "context": ws.context,
            "body": ws.body_bytes,
            "env": env,
            "workdir": ws.workdir,
        }
        beacons = BeaconMonitor(request.config, emit, request.attempt)
        if beacons.enabled:
            beacons.start()
        before = resource.getrusage(resource.RUSAGE_THREAD)
        t0 = time.monotonic()
        try:
            exit_code, value, trace, error = await _invoke(fn, payload, timeout)
        except asyncio.CancelledError:
            beacons.stop()
            raise
        usage = _usage(before, t0)
        stdout, stderr = StreamCapture(cap), StreamCapture(cap)
        structured, text = None, ""
        if error is None:
            try:
                text, structured = _interpret(value)
            except TypeError as exc:
                exit_code, error, text = 1, str(exc), ""
            stdout.feed(text.encode("utf-8", "surrogatepass"))
        stderr.feed(trace.encode())
        redact = Redactor(env)
        outcome = build_outcome(
            self.name, ws, node, exit_code=exit_code, runner_exit_code=exit_code, stdout=stdout, stderr=stderr,
            notes=[], redact=redact, usage=usage, started=started, error=error,
        )  # fmt: skip
        if outcome.ok and structured is not None:
            # redaction happens before parsing: re-parse only when it changed the text
            same = not redact or outcome.result["stdout"] == text.strip()
            outcome.structured = structured if same else parse_structured(outcome.result["stdout"])
        if beacons.enabled:
            beacons.finish(outcome.ok)
        return outcome


async def _invoke(
    fn: Callable[..., Any], payload: dict[str, Any], timeout: float | None
) -> tuple[int, Any, str, str | None]:
    """Call the payload: ``(exit_code, return value, traceback text, error text or None)``."""
    try:
        value = fn(payload)
        if pyinspect.isawaitable(value):
            value = await _await(value, timeout)
    except _Timeout:
        return 1, None, "", "python command timed out"
    except (Exception, SystemExit) as exc:  # the payload's exception is the attempt's failure
        code = exc.code if isinstance(exc, SystemExit) and isinstance(exc.code, int) and exc.code else 1
        return code, None, traceback.format_exc(), f"python callable raised {type(exc).__name__}: {exc}"
    return 0, value, "", None


class _Timeout(Exception):
    """Our own timeout of an awaited callable (a TimeoutError raised by the payload is its error)."""


async def _await(value: Any, timeout: float | None) -> Any:
    if not timeout:
        return await value
    try:
        async with asyncio.timeout(timeout) as scope:
            return await value
    except TimeoutError:
        if scope.expired():
            raise _Timeout from None
        raise


def _interpret(value: Any) -> tuple[str, dict[str, Any] | None]:
    """(stdout text, structured mapping or None) for a callable's return value."""
    if value is None:
        return "", None
    if isinstance(value, str):
        return value, None
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace"), None
    if isinstance(value, Mapping):
        mapping = dict(value)
        text = dumps(mapping).decode("utf-8")
        return text, mapping if not STRUCTURED_KEYS.isdisjoint(mapping) else None
    try:
        return dumps(value).decode("utf-8"), None
    except TypeError:
        raise TypeError(
            f"python callable returned {type(value).__name__}; return a mapping, a string or None"
        ) from None


def _usage(before: Any, t0: float) -> dict[str, int]:
    after = resource.getrusage(resource.RUSAGE_THREAD)
    return {
        "wall_ms": int((time.monotonic() - t0) * 1000),
        "cpu_user_ms": int((after.ru_utime - before.ru_utime) * 1000),
        "cpu_system_ms": int((after.ru_stime - before.ru_stime) * 1000),
        "peak_rss_bytes": int(after.ru_maxrss) * 1024,
    }
