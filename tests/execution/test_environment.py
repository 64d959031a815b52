"""Environment, placeholders and command forms (executor-contract.md §5, §6)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest
from execution_helpers import make_request

from mncore.errors import ExecutionError
from mncore.execution.environment import (
    MINIMAL_ENV,
    build_command,
    build_env,
    placeholder_values,
    runtime_environ,
    stringify,
    substitute,
)
from mncore.execution.workspace import stage

NAMES = (
    "INPUT_FILE", "CONTEXT_FILE", "MESSAGE_FILE", "BODY_FILE", "BODY_CONTENT_TYPE", "BODY_CONTENT_ENCODING",
    "AGENT_TYPE", "AGENT_TEMPLATE", "JOB_ID", "AGENT_ID", "WORKDIR",
)  # fmt: skip


def _env(tmp_path: Path, config: dict[str, Any], base: dict[str, str] | None = None) -> dict[str, str]:
    request = make_request(config, template_type="map")
    ws = stage(request, "bwrap", "n", str(tmp_path), remote_root="/sandbox/job")
    try:
        return build_env(request, ws, "node-a", MINIMAL_ENV if base is None else base)
    finally:
        ws.remove()


def test_every_variable_in_both_spellings(tmp_path: Path) -> None:
    env = _env(tmp_path, {"workdir": "/sandbox/job/w"})
    for name in NAMES:
        assert env[f"MN_{name}"] == env[f"MIRROR_NEURON_{name}"], name
    assert env["MN_INPUT_FILE"] == "/sandbox/job/mirror_neuron_input.json"
    assert env["MN_CONTEXT_FILE"] == "/sandbox/job/mirror_neuron_context.json"
    assert env["MN_MESSAGE_FILE"] == "/sandbox/job/mirror_neuron_message.json"
    assert env["MN_BODY_FILE"] == "/sandbox/job/mirror_neuron_body.bin"
    assert env["MN_BODY_CONTENT_TYPE"] == "application/json"
    assert env["MN_BODY_CONTENT_ENCODING"] == "identity"
    assert env["MN_AGENT_TEMPLATE"] == "map" and env["MN_AGENT_TYPE"] == "executor"
    assert env["MN_JOB_ID"] == "job-1" and env["MN_AGENT_ID"] == "worker"
    assert env["MN_WORKDIR"] == "/sandbox/job/w"
    assert env["MN_EXECUTION_NODE"] == "node-a"
    assert "MIRROR_NEURON_EXECUTION_NODE" not in env
    assert env["PATH"] == MINIMAL_ENV["PATH"] and env["HOME"] == "/tmp"
    assert not any(k.startswith("MN_AGENT_BEACON") for k in env)


def test_beacon_variables_when_enabled(tmp_path: Path) -> None:
    env = _env(tmp_path, {"beacon_enabled": True, "beacon_interval_ms": 2000})
    assert env["MN_AGENT_BEACON_STDOUT_PREFIX"] == "__MN_AGENT_BEACON__"
    assert env["MN_AGENT_BEACON_INTERVAL_MS"] == "2000"
    assert env["MN_AGENT_BEACON_TIMEOUT_MS"] == "45000"
    assert env["MN_AGENT_BEACON_REQUIRED"] == "0"
    assert env["MN_AGENT_BEACON_JOB_ID"] == "job-1" and env["MN_AGENT_BEACON_AGENT_ID"] == "worker"
    assert env["MN_AGENT_BEACON_ATTEMPT"] == "1" and env["MN_AGENT_BEACON_SOURCE"] == "agent"
    assert env["MN_AGENT_BEACON_STEP"] == "worker"


def test_precedence_base_runtime_config_pass_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MN_TEST_PASSED", "from-runtime")
    config = {
        "environment": {"MN_JOB_ID": "override", "FLAG": True, "N": 3, "OBJ": {"a": 1}, "NONE": None,
                        "MN_TEST_PASSED": "from-config", "HOME": "/home/x"},
        "pass_env": ["MN_TEST_PASSED", "MN_TEST_NOT_SET"],
    }  # fmt: skip
    env = _env(tmp_path, config, {"HOME": "/base", "MN_JOB_ID": "base"})
    assert env["MN_JOB_ID"] == "override"  # config.environment beats a runtime variable
    assert env["MIRROR_NEURON_JOB_ID"] == "job-1"
    assert env["HOME"] == "/home/x"
    assert (env["FLAG"], env["N"], env["OBJ"], env["NONE"]) == ("true", "3", '{"a":1}', "")
    assert env["MN_TEST_PASSED"] == "from-runtime"  # pass_env wins over everything
    assert "MN_TEST_NOT_SET" not in env


def test_stringify() -> None:
    assert [stringify(v) for v in ("s", False, 1.5, [1, "a"])] == ["s", "false", "1.5", '[1,"a"]']


def test_placeholders_double_then_single_only_listed_names() -> None:
    values = {"input_file": "/in", "workdir": "/w", "job_id": "j", "agent_id": "a"}
    assert substitute("{{input_file}} {input_file} {workdir}/x", values) == "/in /in /w/x"
    assert substitute("{other} {{other}} {job_id}-{agent_id}", values) == "{other} {{other}} j-a"
    assert substitute("{{{job_id}}}", values) == "{j}"
    assert substitute("no braces", values) == "no braces"


def test_placeholder_values_are_paths_seen_by_the_command(tmp_path: Path) -> None:
    request = make_request({})
    ws = stage(request, "bwrap", "n", str(tmp_path), remote_root="/sandbox/job")
    try:
        values = placeholder_values(request, ws)
    finally:
        ws.remove()
    assert values == {
        "input_file": "/sandbox/job/mirror_neuron_input.json",
        "context_file": "/sandbox/job/mirror_neuron_context.json",
        "message_file": "/sandbox/job/mirror_neuron_message.json",
        "body_file": "/sandbox/job/mirror_neuron_body.bin",
        "workdir": "/sandbox/job",
        "job_id": "job-1",
        "agent_id": "worker",
    }


def test_command_forms() -> None:
    values = {"input_file": "/in"}
    assert build_command(["cat", "{input_file}", 3], values, max_length=100) == ["cat", "/in", "3"]
    assert build_command("cat {{input_file}}", values, max_length=100) == ["bash", "-lc", "cat /in"]
    assert build_command(None, values, max_length=100) is None
    assert build_command("", values, max_length=100) is None
    with pytest.raises(ExecutionError, match="config.command must be"):
        build_command({"x": 1}, values, max_length=100)


def test_command_length_cap_is_exact() -> None:
    with pytest.raises(ExecutionError) as info:
        build_command("x" * 41, {}, max_length=40)
    assert str(info.value) == "command exceeds MN_MAX_COMMAND_LENGTH (41 > 40)"
    with pytest.raises(ExecutionError, match=r"^command exceeds MN_MAX_COMMAND_LENGTH \(11 > 10\)$"):
        build_command(["echo", "abcdef"], {}, max_length=10)  # "echo abcdef"
    assert build_command(["echo", "abcde"], {}, max_length=10) == ["echo", "abcde"]


def test_python_fallback_for_missing_interpreters(tmp_path: Path) -> None:
    notes: list[str] = []
    argv = build_command(["python3.99", "-c", "1"], {}, max_length=100, search_path=str(tmp_path), notes=notes)
    assert argv == [sys.executable, "-c", "1"]
    assert notes == [f"python3.99 not found on PATH; using the runtime's interpreter {sys.executable}"]
    text = build_command("python3 -c 'print(1)' && python3 x", {}, max_length=100, search_path=str(tmp_path))
    assert text is not None and text[2].startswith(sys.executable + " -c") and text[2].endswith("&& python3 x")
    (tmp_path / "python3").write_text("#!/bin/sh\n")
    (tmp_path / "python3").chmod(0o755)
    assert build_command(["python3"], {}, max_length=100, search_path=str(tmp_path)) == ["python3"]
    assert build_command(["pythonista"], {}, max_length=100, search_path=str(tmp_path)) == ["pythonista"]
    assert build_command(["python3.99"], {}, max_length=100) == ["python3.99"]  # docker: no fallback


def test_runtime_environ_follows_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MN_TEST_ENV_CACHE", "one")
    first = runtime_environ()
    assert first["MN_TEST_ENV_CACHE"] == "one"
    first["MN_TEST_ENV_CACHE"] = "mutated copy"
    assert runtime_environ()["MN_TEST_ENV_CACHE"] == "one"
    monkeypatch.setenv("MN_TEST_ENV_CACHE", "two")
    assert runtime_environ()["MN_TEST_ENV_CACHE"] == "two"
    monkeypatch.delenv("MN_TEST_ENV_CACHE")
    assert "MN_TEST_ENV_CACHE" not in runtime_environ()
    assert runtime_environ() == dict(os.environ)
