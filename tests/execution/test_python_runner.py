"""The in-process python runner (executor-contract.md §15)."""

from __future__ import annotations

import json
import os
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from execution_helpers import Recorder, run_with

from mncore.config import Settings
from mncore.execution import AttemptOutcome, is_transient

MODULE = """
import asyncio, json, os
CALLS = []
IMPORTS = globals().setdefault("IMPORTS", 0) + 1

def echo(request):
    CALLS.append(request)
    files = sorted(n for n in os.listdir(request["workdir"]) if n.startswith("mirror_neuron_"))
    return {"keys": sorted(request), "input": request["input"], "body": request["body"].decode(),
            "ctx": request["context"]["job_id"], "env": request["env"]["MIRROR_NEURON_AGENT_ID"],
            "files": files, "message_type": request["message"]["envelope"]["type"]}

def structured(request):
    return {"emit_messages": [{"type": "next", "body": request["input"]}], "next_state": {"seen": 1}}

def text(request):
    return "plain " + os.environ.get("NOT_IN_ENV", "x") + " " + request["env"]["MY_TOKEN"]

def nothing(request):
    return None

async def coro(request):
    await asyncio.sleep(0.01)
    return {"events": [{"type": "done", "payload": {"n": request["input"]["n"]}}]}

async def slow(request):
    await asyncio.sleep(30)

def boom(request):
    raise ConnectionResetError("connection reset by upstream")

def bad(request):
    return object()

def leave(request):
    raise SystemExit(3)

async def own_timeout(request):
    raise TimeoutError("upstream timed out")

class Holder:
    @staticmethod
    def method(request):
        return "nested"
"""


@pytest.fixture
def bundle(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    payloads = tmp_path / "payloads"
    payloads.mkdir()
    name = f"mn_payload_{uuid.uuid4().hex[:8]}"
    (payloads / f"{name}.py").write_text(MODULE)
    saved = list(sys.path)
    yield payloads, name
    sys.path[:] = saved
    sys.modules.pop(name, None)


async def _run(
    settings: Settings, bundle: tuple[Path, str], fn: str, **config: object
) -> tuple[AttemptOutcome, Recorder]:
    payloads, name = bundle
    return await run_with(
        settings, "python", {"python_callable": f"{name}:{fn}", **config}, {"n": 7}, payloads_path=str(payloads)
    )


async def test_callable_gets_one_dict_and_a_staged_workspace(settings: Settings, bundle: tuple[Path, str]) -> None:
    outcome, _ = await _run(settings, bundle, "echo")
    assert outcome.ok and outcome.structured is None
    data = json.loads(outcome.result["stdout"])
    assert data == {
        "keys": ["body", "context", "env", "input", "message", "workdir"],
        "input": {"n": 7},
        "body": '{"n":7}',
        "ctx": "job-1",
        "env": "worker",
        "files": [
            "mirror_neuron_body.bin", "mirror_neuron_body_meta.json", "mirror_neuron_context.json",
            "mirror_neuron_input.json", "mirror_neuron_message.json",
        ],
        "message_type": "task",
    }  # fmt: skip
    result = outcome.result
    assert result["runner"] == "python" and result["exit_code"] == 0 and result["runner_exit_code"] == 0
    assert not os.path.exists(result["remote_dir"]) and result["sandbox_name"] == "host-local-job-1-worker"
    assert set(result["resource_usage"]) == {"wall_ms", "cpu_user_ms", "cpu_system_ms", "peak_rss_bytes"}


async def test_env_holds_only_section_5_variables(settings: Settings, bundle: tuple[Path, str]) -> None:
    _, name = bundle
    await _run(settings, bundle, "echo", environment={"EXTRA": 1})
    env = sys.modules[name].CALLS[-1]["env"]
    assert env["EXTRA"] == "1" and env["MN_EXECUTION_NODE"] == "node-test"
    assert "PATH" not in env and all(k.startswith(("MN_", "MIRROR_NEURON_")) or k == "EXTRA" for k in env)


async def test_mapping_with_structured_key(settings: Settings, bundle: tuple[Path, str]) -> None:
    outcome, _ = await _run(settings, bundle, "structured")
    assert outcome.structured == {"emit_messages": [{"type": "next", "body": {"n": 7}}], "next_state": {"seen": 1}}
    assert json.loads(outcome.result["stdout"]) == outcome.structured


async def test_string_none_coroutine_and_dotted_returns(settings: Settings, bundle: tuple[Path, str]) -> None:
    text, _ = await _run(settings, bundle, "text", environment={"MY_TOKEN": "secret-123"})
    assert text.result["stdout"] == "plain x [REDACTED]"
    none, _ = await _run(settings, bundle, "nothing")
    assert none.ok and none.result["stdout"] == "" and none.structured is None
    coro, _ = await _run(settings, bundle, "coro")
    assert coro.structured == {"events": [{"type": "done", "payload": {"n": 7}}]}
    nested, _ = await _run(settings, bundle, "Holder.method")
    assert nested.result["stdout"] == "nested"


async def test_exception_is_a_failed_attempt_with_traceback(settings: Settings, bundle: tuple[Path, str]) -> None:
    outcome, _ = await _run(settings, bundle, "boom")
    result = outcome.result
    assert not outcome.ok and result["exit_code"] == 1
    assert result["error"] == "python callable raised ConnectionResetError: connection reset by upstream"
    assert result["stderr"].startswith("Traceback (most recent call last):")
    assert result["stderr"].endswith("ConnectionResetError: connection reset by upstream")
    assert is_transient(result)
    bad, _ = await _run(settings, bundle, "bad")
    assert bad.result["error"] == "python callable returned object; return a mapping, a string or None"


async def test_async_timeout(settings: Settings, bundle: tuple[Path, str]) -> None:
    outcome, _ = await _run(settings, bundle, "slow", timeout_seconds=0.1)
    assert outcome.result["error"] == "python command timed out" and is_transient(outcome.result)
    own, _ = await _run(settings, bundle, "own_timeout", timeout_seconds=10)
    assert own.result["error"] == "python callable raised TimeoutError: upstream timed out"


async def test_system_exit_sets_the_exit_code(settings: Settings, bundle: tuple[Path, str]) -> None:
    outcome, _ = await _run(settings, bundle, "leave")
    assert outcome.result["exit_code"] == 3 and outcome.result["error"] == "python callable raised SystemExit: 3"


async def test_resolution_errors(settings: Settings, bundle: tuple[Path, str]) -> None:
    missing, _ = await run_with(settings, "python", {})
    assert missing.result == {"error": "python runner requires config.python_callable", "runner": "python",
                              "sandbox_name": "host-local-job-1-worker", "node_name": "node-test"}  # fmt: skip
    no_attr, _ = await _run(settings, bundle, "absent")
    assert no_attr.result["error"].endswith("has no attribute absent")
    payloads, _ = bundle
    no_module, _ = await run_with(
        settings, "python", {"python_callable": "mn_no_such_mod:f"}, payloads_path=str(payloads)
    )
    assert "cannot import mn_no_such_mod" in no_module.result["error"]
    malformed, _ = await run_with(settings, "python", {"python_callable": "just_a_module"})
    assert "module:function" in malformed.result["error"]


async def test_module_is_imported_once_and_payloads_first_on_path(settings: Settings, bundle: tuple[Path, str]) -> None:
    payloads, name = bundle
    for _ in range(5):
        await _run(settings, bundle, "nothing")
    assert sys.modules[name].IMPORTS == 1
    assert sys.path[0] == str(payloads)


async def test_same_module_name_in_two_bundles(settings: Settings, tmp_path: Path) -> None:
    paths = []
    for tag in ("one", "two"):
        payloads = tmp_path / tag / "payloads"
        payloads.mkdir(parents=True)
        (payloads / "mn_shared_name_mod.py").write_text(f"def who(request):\n    return {tag!r}\n")
        paths.append(payloads)
    saved = list(sys.path)
    try:
        for payloads, tag in zip(paths, ("one", "two"), strict=True):
            outcome, _ = await run_with(
                settings, "python", {"python_callable": "mn_shared_name_mod:who"}, payloads_path=str(payloads)
            )
            assert outcome.result["stdout"] == tag
    finally:
        sys.path[:] = saved
        sys.modules.pop("mn_shared_name_mod", None)


async def test_runtime_beacons(settings: Settings, bundle: tuple[Path, str]) -> None:
    _, events = await _run(settings, bundle, "nothing", beacon_enabled=True)
    assert [p["status"] for _, p in events.events] == ["started", "completed"]
    _, failed = await _run(settings, bundle, "boom", beacon_enabled=True)
    assert [p["status"] for _, p in failed.events] == ["started", "failed"]


def test_module_source_is_valid_python() -> None:
    compile(textwrap.dedent(MODULE), "<payload>", "exec")
