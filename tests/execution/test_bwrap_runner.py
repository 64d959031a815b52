"""The bwrap runner with real bubblewrap: argument construction (§15) and the isolation it promises."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from execution_helpers import Recorder, make_request, run_with, workspaces

from mncore.config import Settings
from mncore.execution import get_runner, is_transient
from mncore.execution.environment import MINIMAL_ENV
from mncore.execution.runners.bwrap import bwrap_args, env_args

PY = sys.executable
pytestmark = pytest.mark.bwrap


def test_argument_construction_follows_section_15(tmp_path: Path) -> None:
    data, home = tmp_path / "data", tmp_path / "home"
    data.mkdir()
    home.mkdir()
    args = bwrap_args(workspace="/ws", workdir="/sandbox/job/w", data_dir=str(data), home=str(home), network=False)
    entries = sorted(os.listdir("/"))
    expected: list[str] = []
    for name in entries:
        path = "/" + name
        if name in ("dev", "proc", "tmp", "sandbox"):
            continue
        if os.path.islink(path):
            expected += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            expected += ["--ro-bind", path, path]
    expected += [
        "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp", "--bind", "/ws", "/sandbox/job",
        "--tmpfs", str(data), "--tmpfs", str(home),
    ]  # fmt: skip
    # the runtime's interpreter stays visible when /tmp (or a hidden dir) would cover it (a venv in /tmp)
    hidden = ("/tmp/", str(data) + "/", str(home) + "/")
    for root in dict.fromkeys(os.path.realpath(p) for p in (sys.prefix, sys.base_prefix)):
        if (root + "/").startswith(hidden):
            expected += ["--ro-bind", root, root]
    expected += ["--chdir", "/sandbox/job/w", "--unshare-all", "--die-with-parent", "--new-session"]
    assert args == expected
    assert "--ro-bind" in args and args[:3] != ["--ro-bind", "/", "/"]
    if os.path.islink("/bin"):
        assert ["--symlink", os.readlink("/bin"), "/bin"] == args[args.index("/bin") - 2 : args.index("/bin") + 1]
    networked = bwrap_args(workspace="/ws", workdir="/w", data_dir=None, home="/no/such/dir", network=True)
    assert networked[-4:] == ["--unshare-all", "--share-net", "--die-with-parent", "--new-session"]
    assert "/no/such/dir" not in networked
    other_root = bwrap_args(workspace="/ws", workdir="/w", data_dir=None, home=None, upload_root="/opt/job")
    assert "/opt" not in other_root[: other_root.index("--dev")] and other_root[
        other_root.index("--bind") : other_root.index("--bind") + 3
    ] == ["--bind", "/ws", "/opt/job"]
    assert env_args({"A": "1", "B": "x y"}) == ["--clearenv", "--setenv", "A", "1", "--setenv", "B", "x y"]


async def test_runs_in_the_sandbox_with_files_env_and_placeholders(bwrap_settings: Settings) -> None:
    cmd = "pwd; echo {input_file} $MIRROR_NEURON_WORKDIR; cat $MN_INPUT_FILE; echo; echo $HOME $TMPDIR $LANG"
    outcome, _ = await run_with(bwrap_settings, "bwrap", {"command": cmd, "workdir": "/sandbox/job/sub"}, {"v": 1})
    result = outcome.result
    assert outcome.ok, result
    assert result["stdout"].split("\n") == [
        "/sandbox/job/sub",
        "/sandbox/job/mirror_neuron_input.json /sandbox/job/sub",
        "{", '  "v": 1', "}",
        "/tmp /tmp C.UTF-8",
    ]  # fmt: skip
    assert result["remote_dir"] == "/sandbox/job" and result["runner"] == "bwrap"
    assert result["sandbox_name"].startswith("mirror-neuron-job-1-worker-") and result["sandbox_name"].endswith(
        "-i1-a1"
    )
    assert workspaces(bwrap_settings.temp_dir) == []


async def test_minimal_environment_and_pass_env(bwrap_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MN_TEST_LEAK", "leaked")
    outcome, _ = await run_with(bwrap_settings, "bwrap", {"command": ["env"]})
    env = dict(line.split("=", 1) for line in outcome.result["stdout"].split("\n"))
    assert "MN_TEST_LEAK" not in env
    assert {k: env[k] for k in MINIMAL_ENV} == MINIMAL_ENV
    assert env["MN_JOB_ID"] == env["MIRROR_NEURON_JOB_ID"] == "job-1"
    passed, _ = await run_with(bwrap_settings, "bwrap", {"command": "echo $MN_TEST_LEAK", "pass_env": ["MN_TEST_LEAK"]})
    assert passed.result["stdout"] == "leaked"


async def test_cannot_write_outside_the_workspace(bwrap_settings: Settings, tmp_path: Path) -> None:
    target = tmp_path / "outside.txt"
    cmd = (
        f"touch {target} 2>/dev/null && echo wrote-host || echo host-denied; "
        "touch /usr/mn-test 2>/dev/null && echo wrote-usr || echo usr-denied; "
        "echo private > /tmp/mn-private-test && echo tmp-ok; "
        "echo ws > in-workspace && cat in-workspace"
    )
    outcome, _ = await run_with(bwrap_settings, "bwrap", {"command": cmd})
    assert outcome.result["stdout"].split("\n") == ["host-denied", "usr-denied", "tmp-ok", "ws"]
    assert not target.exists() and not os.path.exists("/usr/mn-test")
    assert not os.path.exists("/tmp/mn-private-test")


async def test_cannot_read_the_store_or_home(bwrap_settings: Settings) -> None:
    for directory in (bwrap_settings.data_dir, bwrap_settings.home):
        Path(directory, "secret.txt").write_text("store-secret")
    cmd = f"cat {bwrap_settings.data_dir}/secret.txt {bwrap_settings.home}/secret.txt; ls -A {bwrap_settings.data_dir}"
    outcome, _ = await run_with(bwrap_settings, "bwrap", {"command": cmd})
    assert "store-secret" not in outcome.result["raw_output"]
    assert "No such file or directory" in outcome.result["stderr"]
    host, _ = await run_with(bwrap_settings, "host", {"command": f"cat {bwrap_settings.data_dir}/secret.txt"})
    assert host.result["stdout"] == "store-secret"  # the file is really there


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    yield sock
    sock.close()


def _connect_script(port: int) -> list[str]:
    code = (
        "import socket\n"
        f"try:\n socket.create_connection(('127.0.0.1', {port}), timeout=3).close(); print('connected')\n"
        "except OSError as exc:\n print('failed', type(exc).__name__)\n"
    )
    return ["python3", "-c", code]


async def test_no_network_unless_allowed(bwrap_settings: Settings, listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    host, _ = await run_with(bwrap_settings, "host", {"command": _connect_script(port)})
    assert host.result["stdout"] == "connected"
    sandboxed, _ = await run_with(bwrap_settings, "bwrap", {"command": _connect_script(port)})
    assert sandboxed.result["stdout"].startswith("failed")
    networked, _ = await run_with(bwrap_settings, "bwrap", {"command": _connect_script(port), "network": True})
    assert networked.result["stdout"] == "connected"


async def test_python_fallback_inside_the_sandbox(bwrap_settings: Settings) -> None:
    outcome, _ = await run_with(bwrap_settings, "bwrap", {"command": ["python3.99", "-c", "print('inside')"]})
    assert outcome.result["stdout"] == "inside"
    assert outcome.result["logs"].startswith("python3.99 not found on PATH")


async def test_exit_codes_and_structured_output(bwrap_settings: Settings) -> None:
    failed, _ = await run_with(bwrap_settings, "bwrap", {"command": "exit 5"})
    assert failed.result["exit_code"] == failed.result["runner_exit_code"] == 5
    assert failed.result["error"] == "command exited with status 5"
    ok, _ = await run_with(bwrap_settings, "bwrap", {"command": ["echo", '{"next_state": {"k": 1}}']})
    assert ok.structured == {"next_state": {"k": 1}}


async def test_secrets_never_appear_on_the_bwrap_command_line(bwrap_settings: Settings) -> None:
    request = make_request({"command": "sleep 0.5; echo $API_TOKEN", "environment": {"API_TOKEN": "very-secret-1"}})
    task = asyncio.create_task(get_runner("bwrap", bwrap_settings).run(request, Recorder()))
    cmdlines: list[str] = []
    deadline = time.monotonic() + 5
    while not cmdlines and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
        for child in psutil.Process().children(recursive=True):
            try:
                if child.name() == "bwrap":
                    cmdlines.append(" ".join(child.cmdline()))
            except psutil.Error:
                continue
    outcome = await task
    assert cmdlines and all("very-secret-1" not in line and "--clearenv" not in line for line in cmdlines)
    assert outcome.result["stdout"] == "[REDACTED]"


async def test_timeout_kills_the_sandbox(bwrap_settings: Settings) -> None:
    started = time.monotonic()
    outcome, _ = await run_with(
        bwrap_settings, "bwrap", {"command": "sleep 300.17 & sleep 300.17", "timeout_seconds": 0.5}
    )
    assert time.monotonic() - started < 6
    assert outcome.result["error"] == "bwrap command timed out" and is_transient(outcome.result)
    time.sleep(0.1)
    leftovers = [p for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"] == ["sleep", "300.17"]]
    assert leftovers == []


async def test_resource_usage_of_the_sandboxed_tree(bwrap_settings: Settings) -> None:
    script = (
        "import time\nb = bytearray(60 << 20)\nfor i in range(0, len(b), 4096): b[i] = 1\n"
        "t = time.process_time() + 0.3\nwhile time.process_time() < t: pass\ntime.sleep(0.2)"
    )
    outcome, _ = await run_with(bwrap_settings, "bwrap", {"command": [PY, "-c", script]})
    usage = outcome.result["resource_usage"]
    assert outcome.ok and usage["wall_ms"] >= 500
    assert usage["cpu_user_ms"] + usage["cpu_system_ms"] >= 200
    assert usage["peak_rss_bytes"] >= 60 << 20
