"""The host runner with real subprocesses: every row of executor-contract.md §3 to §8 that applies."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import psutil
import pytest
from execution_helpers import Recorder, make_request, run_with, workspaces

from mncore.config import Settings
from mncore.execution import get_runner, is_transient

PY = sys.executable


async def test_result_map_and_files_and_both_env_spellings(settings: Settings) -> None:
    script = (
        "import json, os\n"
        "body = json.load(open(os.environ['MIRROR_NEURON_INPUT_FILE']))\n"
        "ctx = json.load(open(os.environ['MN_CONTEXT_FILE']))\n"
        "print(json.dumps({'body': body, 'ctx_job': ctx['job_id'], 'node': os.environ['MN_EXECUTION_NODE'],"
        " 'legacy': os.environ['MIRROR_NEURON_AGENT_ID'], 'raw': open(os.environ['MN_BODY_FILE']).read()}))\n"
    )
    outcome, _ = await run_with(settings, "host", {"command": [PY, "-c", script]}, {"q": "hello"})
    result = outcome.result
    assert outcome.ok, result
    assert list(result) == [
        "sandbox_name", "remote_dir", "exit_code", "runner_exit_code", "stdout", "stderr", "logs", "raw_output",
        "runner", "node_name", "duration_ms", "resource_usage",
    ]  # fmt: skip
    data = json.loads(result["stdout"])
    assert data == {"body": {"q": "hello"}, "ctx_job": "job-1", "node": "node-test", "legacy": "worker",
                    "raw": '{"q":"hello"}'}  # fmt: skip
    assert result["sandbox_name"] == "host-local-job-1-worker"
    assert result["remote_dir"].startswith(f"{settings.temp_dir}/mirror_neuron_host_host-local-job-1-worker_")
    assert not os.path.exists(result["remote_dir"]), "workspace must be removed after the attempt"
    assert (result["exit_code"], result["runner_exit_code"], result["runner"]) == (0, 0, "host")
    assert result["logs"] == "" and result["stderr"] == "" and result["node_name"] == "node-test"
    assert outcome.structured is None


async def test_host_inherits_the_runtime_environment(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MN_TEST_INHERITED", "yes")
    outcome, _ = await run_with(settings, "host", {"command": "echo $MN_TEST_INHERITED"})
    assert outcome.result["stdout"] == "yes"


async def test_list_commands_run_without_a_shell_and_strings_with_bash(settings: Settings) -> None:
    listed, _ = await run_with(settings, "host", {"command": ["echo", "$HOME", "{job_id}", "{{agent_id}}"]})
    assert listed.result["stdout"] == "$HOME job-1 worker"
    shell, _ = await run_with(settings, "host", {"command": "echo $((1 + 2)) {agent_id} && basename {input_file}"})
    assert shell.result["stdout"] == "3 worker\nmirror_neuron_input.json"


async def test_no_command(settings: Settings) -> None:
    outcome, events = await run_with(settings, "host", {})
    assert outcome.ok and outcome.result["stdout"] == "No command configured for agent worker"
    assert outcome.result["exit_code"] == 0 and events.events == []


async def test_workdir_mapping_and_literal(settings: Settings, tmp_path: Path) -> None:
    mapped, _ = await run_with(settings, "host", {"command": "pwd; echo $MN_WORKDIR", "workdir": "/sandbox/job/a/b"})
    pwd, seen = mapped.result["stdout"].split("\n")
    assert pwd == seen == mapped.result["remote_dir"] + "/a/b"
    literal, _ = await run_with(settings, "host", {"command": ["pwd"], "workdir": str(tmp_path)})
    assert literal.result["stdout"] == str(tmp_path)


async def test_uploads_are_visible(settings: Settings, tmp_path: Path) -> None:
    payloads = tmp_path / "payloads"
    (payloads / "lib").mkdir(parents=True)
    (payloads / "lib" / "tool.sh").write_text("echo tool-ran")
    config = {"command": "bash lib/tool.sh && bash sub/t.sh",
              "upload_paths": [{"source": "lib"}, {"source": "lib/tool.sh", "target": "sub/t.sh"}]}  # fmt: skip
    outcome, _ = await run_with(settings, "host", config, payloads_path=str(payloads))
    assert outcome.result["stdout"] == "tool-ran\ntool-ran"
    failed, _ = await run_with(
        settings, "host", {"command": "true", "upload_path": "missing"}, payloads_path=str(payloads)
    )
    assert failed.result == {"error": f"upload source does not exist: {payloads}/missing", "runner": "host",
                             "sandbox_name": "host-local-job-1-worker", "node_name": "node-test"}  # fmt: skip


async def test_separate_streams_structured_stdout_survives_stderr_noise(settings: Settings) -> None:
    cmd = 'echo \'log line\' >&2; echo \'{"events": [{"type": "x"}], "next_state": {"n": 2}}\''
    outcome, _ = await run_with(settings, "host", {"command": cmd})
    assert outcome.result["stderr"] == "log line"
    assert outcome.structured == {"events": [{"type": "x"}], "next_state": {"n": 2}}
    assert outcome.result["raw_output"].startswith('{"events"') and outcome.result["raw_output"].endswith("log line\n")


async def test_nonzero_exit_fails_and_stdout_is_not_parsed(settings: Settings) -> None:
    outcome, _ = await run_with(settings, "host", {"command": "echo '{\"complete_run\": true}'; exit 3"})
    assert not outcome.ok and outcome.structured is None
    assert outcome.result["error"] == "command exited with status 3"
    assert outcome.result["exit_code"] == 3 and outcome.result["runner_exit_code"] == 3
    assert not is_transient(outcome.result)


async def test_killed_by_signal_is_128_plus_n(settings: Settings) -> None:
    outcome, _ = await run_with(settings, "host", {"command": ["bash", "-c", "kill -9 $$"]})
    assert outcome.result["exit_code"] == 137 and outcome.result["error"] == "command exited with status 137"


async def test_missing_binary_and_command_too_long(settings: Settings) -> None:
    outcome, _ = await run_with(settings, "host", {"command": ["/nonexistent/tool"]})
    assert set(outcome.result) == {"error", "runner", "sandbox_name", "node_name"}
    assert outcome.result["error"].startswith("cannot start /nonexistent/tool: No such file or directory")
    long, _ = await run_with(settings.replace(max_command_length=20), "host", {"command": "echo " + "x" * 20})
    assert long.result["error"] == "command exceeds MN_MAX_COMMAND_LENGTH (25 > 20)"


async def test_python_fallback_is_noted_in_logs(settings: Settings) -> None:
    config = {"command": ["python3.99", "-c", "print(6 * 7)"], "environment": {"PATH": "/usr/bin:/bin"}}
    outcome, _ = await run_with(settings, "host", config)
    assert outcome.result["stdout"] == "42"
    assert outcome.result["logs"] == f"python3.99 not found on PATH; using the runtime's interpreter {PY}"


async def test_output_cap_marks_and_skips_parsing(settings: Settings) -> None:
    cmd = [
        PY,
        "-c",
        "import sys; print('{\"events\": [], \"pad\": \"' + 'x' * 500 + '\"}'); sys.stderr.write('e' * 300)",
    ]
    outcome, _ = await run_with(settings, "host", {"command": cmd, "max_output_bytes": 100})
    result = outcome.result
    assert outcome.ok and outcome.structured is None
    assert result["stdout"].endswith("\n[mn: output truncated, 426 bytes omitted]")
    assert result["stderr"] == "e" * 100 + "\n[mn: output truncated, 200 bytes omitted]"
    assert "stdout truncated: 426 bytes omitted" in result["logs"]
    assert "stderr truncated: 200 bytes omitted" in result["logs"]


async def test_redaction_in_every_text_field(settings: Settings) -> None:
    config = {
        "command": "echo token=$API_TOKEN pw=$DB_PASSWORD short=$SHORT_KEY; echo $API_TOKEN >&2; exit 1",
        "environment": {"API_TOKEN": "tok-abc-123", "DB_PASSWORD": "hunter2000", "SHORT_KEY": "abc"},
    }
    outcome, _ = await run_with(settings, "host", config)
    result = outcome.result
    assert result["stdout"] == "token=[REDACTED] pw=[REDACTED] short=abc"
    assert result["stderr"] == "[REDACTED]"
    assert "tok-abc-123" not in json.dumps(result) and "hunter2000" not in json.dumps(result)


async def test_agent_and_runtime_beacons(settings: Settings) -> None:
    cmd = (
        'echo "${MN_AGENT_BEACON_STDOUT_PREFIX}{\\"status\\": \\"working\\", \\"progress\\": 0.5}"; '
        'sleep 0.35; echo "${MN_AGENT_BEACON_STDOUT_PREFIX}plain text"; echo \'{"events": []}\''
    )
    config = {"command": cmd, "beacon_enabled": True, "beacon_interval_ms": 100}
    outcome, events = await run_with(settings, "host", config)
    assert outcome.ok and outcome.result["stdout"] == '{"events": []}'
    assert outcome.structured == {"events": []}
    agent = [p for p in events.of("agent_beacon") if p.get("source") != "runtime"]
    assert agent == [{"status": "working", "progress": 0.5}, {"message": "plain text"}]
    runtime = [p["status"] for p in events.of("agent_beacon") if p.get("source") == "runtime"]
    assert runtime[0] == "started" and runtime[-1] == "completed"
    assert 3 <= runtime.count("working") <= outcome.result["resource_usage"]["wall_ms"] // 100 + 1
    sequences = [p["sequence"] for p in events.of("agent_beacon") if p.get("source") == "runtime"]
    assert sequences == list(range(1, len(sequences) + 1))


async def test_runtime_beacon_failed_on_failure(settings: Settings) -> None:
    _, events = await run_with(settings, "host", {"command": "exit 2", "beacon_enabled": "true"})
    assert [p["status"] for p in events.of("agent_beacon")] == ["started", "failed"]


async def test_required_beacon_missing_kills_and_is_transient(settings: Settings) -> None:
    beacon = 'echo "${MN_AGENT_BEACON_STDOUT_PREFIX}alive"'
    cmd = f"{beacon}; sleep 0.1; {beacon}; sleep 30"
    config = {"command": cmd, "agent_beacon_required": True, "beacon_timeout_ms": 400}
    started = time.monotonic()
    outcome, events = await run_with(settings, "host", config)
    assert time.monotonic() - started < 5
    assert outcome.result["error"] == "agent beacon deadline exceeded" and is_transient(outcome.result)
    missed = events.of("agent_beacon_missed")
    assert len(missed) == 1 and missed[0]["timeout_ms"] == 400
    assert missed[0]["last_beacon_at"] is not None and missed[0]["last_beacon_at"].endswith("Z")
    assert [t for t, _ in events.events] == ["agent_beacon", "agent_beacon", "agent_beacon_missed"]


async def test_required_beacon_never_sent(settings: Settings) -> None:
    config = {"command": "sleep 30", "agent_beacon_required": True, "beacon_timeout_ms": 200}
    outcome, events = await run_with(settings, "host", config)
    assert outcome.result["error"] == "agent beacon deadline exceeded"
    assert events.of("agent_beacon_missed") == [{"timeout_ms": 200, "last_beacon_at": None}]


def _tree_script(pidfile: Path, *, ignore_term: bool = False) -> str:
    trap = "trap '' TERM; " if ignore_term else ""
    # a child in the group, and a double-forked daemon in its own session (it leaves the group and
    # is re-parented away from the tree before the kill happens)
    return (
        f"{trap}sleep 300 & echo $! >> {pidfile}; "
        f"( setsid bash -c 'echo $$ >> {pidfile}; {trap}exec sleep 300' & ); "
        f"echo $$ >> {pidfile}; sleep 300"
    )


def _wait_for_pids(pidfile: Path, count: int) -> list[int]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if pidfile.exists():
            pids = [int(x) for x in pidfile.read_text().split()]
            if len(pids) >= count:
                return pids
        time.sleep(0.02)
    raise AssertionError(f"payload did not write {count} pids")


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


async def test_timeout_kills_the_whole_tree_including_double_forked_daemons(settings: Settings, tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    config = {"command": _tree_script(pidfile), "timeout_seconds": 1}
    started = time.monotonic()
    outcome, _ = await run_with(settings, "host", config)
    assert 1.0 <= time.monotonic() - started < 4
    assert outcome.result["error"] == "host local command timed out" and is_transient(outcome.result)
    assert outcome.result["exit_code"] == 143  # bash died of SIGTERM
    pids = _wait_for_pids(pidfile, 3)
    time.sleep(0.1)
    assert [p for p in pids if _alive(p)] == []


async def test_cancel_kills_the_tree_within_a_second(settings: Settings, tmp_path: Path) -> None:
    import asyncio

    pidfile = tmp_path / "pids"
    request = make_request({"command": _tree_script(pidfile)})
    task = asyncio.create_task(get_runner("host", settings).run(request, Recorder()))
    await asyncio.to_thread(_wait_for_pids, pidfile, 3)
    pids = [int(x) for x in pidfile.read_text().split()]
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - started < 1.0  # SIGTERM was enough: no grace second needed
    time.sleep(0.05)
    assert [p for p in pids if _alive(p)] == []
    assert workspaces(settings.temp_dir) == []


async def test_cancel_escalates_to_sigkill_after_one_second(settings: Settings, tmp_path: Path) -> None:
    import asyncio

    pidfile = tmp_path / "pids"
    request = make_request({"command": _tree_script(pidfile, ignore_term=True)})
    task = asyncio.create_task(get_runner("host", settings).run(request, Recorder()))
    pids = await asyncio.to_thread(_wait_for_pids, pidfile, 3)
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert 0.95 <= time.monotonic() - started < 1.6
    time.sleep(0.05)
    assert [p for p in pids if _alive(p)] == []


async def test_background_process_holding_stdout_does_not_hang(settings: Settings, tmp_path: Path) -> None:
    pidfile = tmp_path / "bg"
    started = time.monotonic()
    outcome, _ = await run_with(settings, "host", {"command": f"sleep 30 & echo $! > {pidfile}; echo done"})
    assert time.monotonic() - started < 3
    assert outcome.ok and outcome.result["stdout"] == "done"
    assert "background process holds them" in outcome.result["logs"]
    psutil.Process(int(pidfile.read_text())).kill()


async def test_resource_usage_is_plausible(settings: Settings) -> None:
    script = (
        "import time\nblob = bytearray(80 * 1024 * 1024)\nfor i in range(0, len(blob), 4096): blob[i] = 1\n"
        "end = time.process_time() + 0.3\nwhile time.process_time() < end: pass\ntime.sleep(0.2)\n"
    )
    outcome, _ = await run_with(settings, "host", {"command": [PY, "-c", script]})
    usage = outcome.result["resource_usage"]
    assert set(usage) == {"wall_ms", "cpu_user_ms", "cpu_system_ms", "peak_rss_bytes"}
    assert usage["wall_ms"] >= 500 and outcome.result["duration_ms"] >= usage["wall_ms"]
    assert 250 <= usage["cpu_user_ms"] + usage["cpu_system_ms"] <= usage["wall_ms"] + 200
    assert 80 * 1024 * 1024 <= usage["peak_rss_bytes"] < 1024 * 1024 * 1024


async def test_attempt_gets_fresh_workspace_and_leaves_nothing(settings: Settings) -> None:
    seen = set()
    for attempt in (1, 2):
        outcome, _ = await run_with(settings, "host", {"command": "touch left-behind; pwd"}, attempt=attempt)
        seen.add(outcome.result["stdout"])
    assert len(seen) == 2 and workspaces(settings.temp_dir) == []


async def test_without_pidfd_the_exit_is_reaped_by_a_thread(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from mncore.execution import process

    monkeypatch.setattr(process, "_HAVE_PIDFD", False)
    outcome, _ = await run_with(settings, "host", {"command": "echo out; echo err >&2; exit 7"})
    assert (outcome.result["stdout"], outcome.result["stderr"], outcome.result["exit_code"]) == ("out", "err", 7)
    assert outcome.result["resource_usage"]["cpu_user_ms"] + outcome.result["resource_usage"]["cpu_system_ms"] >= 0
    pidfile = tmp_path / "pids"
    timed, _ = await run_with(settings, "host", {"command": _tree_script(pidfile), "timeout_seconds": 0.5})
    assert timed.result["error"] == "host local command timed out"
    time.sleep(0.05)
    assert [p for p in _wait_for_pids(pidfile, 3) if _alive(p)] == []


def test_uvloop_runs_the_host_runner(settings: Settings) -> None:
    uvloop = pytest.importorskip("uvloop")

    async def main() -> tuple[str, str]:
        outcome, _ = await run_with(settings, "host", {"command": "echo via-uvloop; echo e >&2"})
        return outcome.result["stdout"], outcome.result["stderr"]

    assert uvloop.run(main()) == ("via-uvloop", "e")
