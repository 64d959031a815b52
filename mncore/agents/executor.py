"""``executor``: the message side of running a payload (executor-contract.md §2, §9-§14).

Per message: lease a slot (FIFO), run attempts with retries inside the lease, release it,
then turn the outcome into actions in the contract's order. The run itself happens in the
execution backend (in-process or a pool worker), never here.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from typing import Any

from .. import error_envelope
from ..execution.leases import Lease, RetryLater
from ..execution.output import is_transient
from ..execution.request import AttemptOutcome, RunRequest
from ..message import Message
from .base import Agent, AgentFailure, HandleResult

logger = logging.getLogger(__name__)

RESULT_HEADERS = {"schema_ref": "com.mirrorneuron.executor.result", "schema_version": "1.0.0"}
_HEAVY = ("stdout", "stderr", "logs", "raw_output")
_COMPLETION_KEYS = ("complete_run", "complete_job", "complete_job?")


def _int(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


class ExecutorAgent(Agent):
    """Runs the node's command once per incoming message."""

    mutates_state_while_awaiting = False  # state changes only after the run, with no await after

    def setup(self, node: dict[str, Any]) -> None:
        self.node = node
        self.config: dict[str, Any] = node.get("config") or {}
        cfg = self.config
        self.pool = cfg.get("pool") or "default"
        self.slots = cfg.get("pool_slots", 1)
        self.max_attempts = max(1, _int(cfg.get("max_attempts"), 1))
        self.backoff_ms = _int(cfg.get("retry_backoff_ms"), 500)
        self.startup_delay_ms = _int(cfg.get("startup_delay_ms"), 0)
        self.queue_timeout_ms = _int(cfg.get("lease_queue_timeout_ms"), -1)
        self.max_queue_length = _int(cfg.get("lease_max_queue_length"), -1)
        self.resources = node.get("resources") or cfg.get("resources") or {}
        self._delayed = False
        self._fallback_sent = False

    def init(self, node: dict[str, Any]) -> Any:
        return {"runs": 0, "agent_state": {}, "last_output_payload": None, "last_result": None, "last_error": None}

    def inspect_state(self, state: Any) -> Any:
        last = state.get("last_result")
        return {
            "runs": state.get("runs", 0),
            "agent_state": state.get("agent_state", {}),
            "last_error": state.get("last_error"),
            "last_result": {k: v for k, v in last.items() if k not in _HEAVY} if isinstance(last, dict) else last,
        }

    def restore_state(self, data: Any) -> Any:
        base = self.init(self.node)
        if isinstance(data, dict):
            base.update(data)
        return base

    # -- recovery: re-emit the last output (gen1 behaviour, §12) ---------------------------
    def recover(self, state: Any, context: dict[str, Any]) -> HandleResult:
        payload = state.get("last_output_payload")
        if payload is None:
            return state, []
        actions: list[tuple[Any, ...]] = [
            ("event", "executor_output_replayed", {"reason": "agent_recovery", "agent_id": self.node["node_id"]})
        ]
        out_type = self._output_type()
        if out_type is not None:
            actions.append(("emit", out_type, payload, self._default_opts(None)))
        return state, actions

    # -- one message ----------------------------------------------------------------------
    async def handle_message(self, message: Message, state: Any, context: dict[str, Any]) -> HandleResult:
        host = self.host
        assert host is not None, "executor agents need a runtime host"
        service = host.execution
        runner, fallback = service.resolve_runner(self.config)
        if fallback is not None and not self._fallback_sent:
            self._fallback_sent = True
            host.event("executor_runner_fallback", fallback)
        if not self._delayed:
            self._delayed = True
            if self.startup_delay_ms > 0 and state.get("runs", 0) == 0:
                await asyncio.sleep(self.startup_delay_ms / 1000.0)
        host.event("executor_lease_requested", {"pool": self.pool, "slots": self.slots})
        settings = service.settings
        granted = await service.leases.acquire(
            self.pool,
            self.slots,
            {"job_id": host.job_id, "agent_id": host.agent_id, "node": host.node_name},
            queue_timeout_ms=self.queue_timeout_ms if self.queue_timeout_ms >= 0 else settings.lease_queue_timeout_ms,
            max_queue_length=self.max_queue_length if self.max_queue_length >= 0 else settings.lease_max_queue_length,
        )
        if isinstance(granted, RetryLater):
            host.event("executor_lease_rejected", granted.details)
            return state, [("__requeue_head__", granted.details["retry_after_ms"])]
        lease: Lease = granted
        ref = lease.ref()
        host.event("executor_lease_acquired", {**ref, "queue_wait_ms": lease.queue_wait_ms})
        try:
            outcome, attempts = await self._attempts(message, state, context, runner, ref)
        finally:
            service.leases.release(lease.lease_id)
            host.event("executor_lease_released", ref)
        if outcome.ok:
            return state, self._success(message, state, outcome, attempts, ref)
        return state, self._failure(state, outcome, attempts, ref)

    async def _attempts(
        self, message: Message, state: Any, context: dict[str, Any], runner: str, lease: dict[str, Any]
    ) -> tuple[AttemptOutcome, int]:
        host = self.host
        assert host is not None
        attempt = 0
        while True:
            attempt += 1
            request = RunRequest(
                job_id=host.job_id,
                agent_id=host.agent_id,
                agent_type=self.node.get("agent_type", "executor"),
                template_type=self.node.get("type") or "generic",
                node_name=host.node_name,
                runner=runner,
                config=self.config,
                message=message.to_dict(),
                agent_state=state.get("agent_state", {}),
                invocation=context.get("invocation", 1),
                attempt=attempt,
                bundle_root=context.get("bundle_root"),
                payloads_path=context.get("payloads_path"),
                resources=self.resources,
                limits=host.execution.limits,
                lease=lease,
            )
            outcome = await host.execution.run_attempt(request, host.event)
            if outcome.ok or attempt >= self.max_attempts or not is_transient(outcome.result):
                return outcome, attempt
            await asyncio.sleep(self.backoff_ms * (2 ** (attempt - 1)) / 1000.0)

    # -- outcome -> actions (§10, §11) -----------------------------------------------------
    def _output_type(self) -> str | None:
        if "output_message_type" not in self.config:
            return "executor_result"
        value = self.config.get("output_message_type")
        return value if isinstance(value, str) and value else None

    def _default_opts(self, message: Message | None) -> dict[str, Any]:
        opts: dict[str, Any] = {"class": "event", "headers": RESULT_HEADERS}
        for key in ("content_type", "content_encoding"):
            if isinstance(self.config.get(key), str):
                opts[key] = self.config[key]
        return opts

    def _success(
        self, message: Message, state: Any, outcome: AttemptOutcome, attempts: int, lease: dict[str, Any]
    ) -> list[tuple[Any, ...]]:
        result = outcome.result
        agent_id = self.node["node_id"]
        sandbox = {**result, "attempts": attempts, "lease": lease}
        payload = {"agent_id": agent_id, "sandbox": sandbox, "input": message.body}
        out = outcome.structured or {}
        actions: list[tuple[Any, ...]] = [
            (
                "event",
                "sandbox_job_completed",
                {
                    "sandbox_name": result.get("sandbox_name"),
                    "exit_code": result.get("exit_code"),
                    "attempts": attempts,
                    "lease_id": lease["lease_id"],
                    "pool": lease["pool"],
                    "duration_ms": result.get("duration_ms"),
                    "resource_usage": result.get("resource_usage"),
                },
            )
        ]
        actions.extend(_structured_events(out.get("events")))
        if "next_state" in out:
            state["agent_state"] = out["next_state"] if out["next_state"] is not None else {}
        out_type = self._output_type()
        if out_type is not None:
            actions.append(("emit", out_type, payload, self._default_opts(message)))
        actions.extend(_emit_messages(out.get("emit_messages"), message, sandbox))
        completion = _completion(out, payload, bool(self.config.get("complete_job")))
        if completion is not None:
            actions.append(completion)
        state["runs"] = state.get("runs", 0) + 1
        state["last_result"] = {k: v for k, v in sandbox.items() if k not in _HEAVY}
        state["last_output_payload"] = payload
        state["last_error"] = None
        return actions

    def _failure(self, state: Any, outcome: AttemptOutcome, attempts: int, lease: dict[str, Any]) -> list[Any]:
        host = self.host
        assert host is not None
        error = {**outcome.result, "attempts": attempts}
        text = str(error.get("error") or "executor failed")
        agent_id = self.node["node_id"]
        fallback_type = self.config.get("failure_message_type")
        envelope = error_envelope.build(error, agent_id=agent_id, attempt=attempts, max_attempts=self.max_attempts)
        if isinstance(fallback_type, str) and fallback_type:
            host.event("executor_fallback_dispatched", {"agent_id": agent_id, "error": envelope})
            body = {
                "agent_id": agent_id,
                "outputs": {"error": text, "fallback_used": True, "failed_agent_id": agent_id},
                "artifacts": [],
                "status": "failed",
            }
            return [("emit", fallback_type, body, {"class": "event"})]
        host.event(
            "sandbox_job_failed",
            {
                "sandbox_name": error.get("sandbox_name"),
                "exit_code": error.get("exit_code"),
                "attempts": attempts,
                "lease_id": lease["lease_id"],
                "pool": lease["pool"],
                "error": envelope,
            },
        )
        state["last_error"] = {k: v for k, v in error.items() if k not in _HEAVY}
        raise AgentFailure(error)


def _structured_events(items: Any) -> list[tuple[Any, ...]]:
    actions: list[tuple[Any, ...]] = []
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict) or not isinstance(item.get("type"), str):
            continue
        payload = item.get("payload", {})
        if payload is None:
            payload = {}
        if not isinstance(payload, dict):
            continue
        actions.append(("event", item["type"], payload))
    return actions


def _emit_messages(items: Any, incoming: Message, sandbox: dict[str, Any]) -> list[tuple[Any, ...]]:
    actions: list[tuple[Any, ...]] = []
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict) or not isinstance(item.get("type"), str) or not item["type"]:
            logger.info("emit_messages item without a string type skipped: %r", item)
            sandbox["logs"] = (sandbox.get("logs") or "") + "emit_messages item skipped: missing type\n"
            continue
        if "body_base64" in item:
            try:
                body: Any = base64.b64decode(str(item["body_base64"]), validate=True)
            except (binascii.Error, ValueError):
                sandbox["logs"] = (sandbox.get("logs") or "") + "emit_messages item skipped: invalid body_base64\n"
                continue
        elif "body" in item:
            body = item["body"]
        else:
            body = item.get("payload", {})
        opts = {
            k: item[k]
            for k in (
                "class",
                "headers",
                "artifacts",
                "stream",
                "content_type",
                "content_encoding",
                "correlation_id",
                "causation_id",
            )
            if k in item
        }
        if isinstance(item.get("to"), str) and item["to"]:
            actions.append(("emit_to", item["to"], item["type"], body, opts))
        else:
            actions.append(("emit", item["type"], body, opts))
    return actions


def _completion(out: dict[str, Any], payload: dict[str, Any], config_complete: bool) -> tuple[Any, ...] | None:
    """Precedence ``complete_run`` > ``complete_job`` > ``complete_job?`` > ``config.complete_job``."""
    run = out.get("complete_run")
    if run is True:
        return ("complete_run", payload)
    if isinstance(run, dict):
        return ("complete_run", run)
    job = out.get("complete_job")
    if job is not None and job is not False:
        return ("complete_job", job)
    if out.get("complete_job?") is True:
        return ("complete_job", payload)
    if config_complete:
        return ("complete_job", payload)
    return None
