"""``mn`` with no server answering at MN_GRPC_TARGET: embedded runs and the local store."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest
from mn_cli_testlib import Mn, write_bundle
from mn_grpc_testlib import GrpcServer, command_job, mn_command, quick_job, until, waiting_job

from mncore.sdk import Client

pytestmark = pytest.mark.slow


def test_run_embedded_then_read_the_local_store(embedded: Mn, tmp_path: Path) -> None:
    bundle = write_bundle(tmp_path / "quick", quick_job("cli_embedded"))
    record = embedded.data("run", str(bundle))
    assert record["status"] == "completed"
    assert embedded.data("job", "list")[0]["job_id"] == record["job_id"]
    assert embedded.data("job", "inspect", record["job_id"])["status"] == "completed"
    assert embedded.data("job", "events", record["job_id"])[-1]["type"] == "job_completed"
    items = embedded.stream("events", record["job_id"], "--follow")
    assert items[-1]["type"] == "complete" and items[-2]["event"]["type"] == "job_completed"
    assert embedded.data("node", "list")[0]["executor_pools"]["default"]["capacity"] >= 1
    assert embedded.data("resource", "set", "--disk", "75")["limits"]["disk"] == 75
    assert embedded.data("resource", "get")["limits"]["disk"] == 75
    assert embedded.data("job", "cleanup", "-y")["deleted_jobs"] == [record["job_id"]]
    human = embedded("run", str(bundle))
    assert human.returncode == 0 and "completed" in human.stdout


def test_failed_embedded_job_exits_1(embedded: Mn, tmp_path: Path) -> None:
    bundle = write_bundle(tmp_path / "fail", command_job(["false"], graph_id="cli_fail"))
    result = embedded("run", str(bundle))
    assert result.returncode == 1 and "failed" in result.stderr


def test_server_only_commands_are_usage_errors(embedded: Mn, tmp_path: Path) -> None:
    bundle = write_bundle(tmp_path / "quick", quick_job())
    detached = embedded.json("run", str(bundle), "--detach", code=2)["error"]
    assert detached["code"] == "MN_USAGE_ERROR" and "--detach needs a running server" in detached["message"]
    assert embedded.json("job", "submit", str(bundle), code=2)["error"]["code"] == "MN_USAGE_ERROR"
    assert embedded("bundle", "reload", "x").returncode == 2


def test_timeout_cancels_the_embedded_job(embedded: Mn, tmp_path: Path) -> None:
    bundle = write_bundle(tmp_path / "slow", command_job(["sleep", "30"], graph_id="cli_slow"))
    started = time.monotonic()
    failed = embedded.json("run", str(bundle), "--timeout", "1", code=1)
    assert time.monotonic() - started < 20
    assert "was cancelled" in failed["error"]["message"]
    assert embedded.data("job", "list")[0]["status"] == "cancelled"


def test_ctrl_c_exits_130_and_cancels_the_embedded_job(embedded: Mn, tmp_path: Path) -> None:
    bundle = write_bundle(tmp_path / "slow", command_job(["sleep", "30"], graph_id="cli_int"))
    env = {**embedded.env, "MN_CLI_OUTPUT": "plain"}
    cmd = [*mn_command(), "run", str(bundle)]
    with subprocess.Popen(cmd, env=env, cwd=tmp_path, stderr=subprocess.PIPE, text=True) as proc:
        until(
            lambda: embedded("job", "list", "--json").stdout.count('"running"') == 1, timeout=40, what="a running job"
        )
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr
    assert embedded.data("job", "list")[0]["status"] == "cancelled"


def test_forced_cancel_of_an_orphan_on_the_local_store(tmp_path: Path) -> None:
    server = GrpcServer(tmp_path).start()
    with Client(server.target, auth_token="", admin_token="") as mn:
        job_id = mn.submit_job(waiting_job("cli_orphan"))
        until(lambda: mn.get_job(job_id)["job"]["status"] == "running", what="running")
    assert server.proc is not None
    server.proc.kill()  # the job stays "running" in the store with no coordinator anywhere
    server.proc.wait()
    local = Mn(server.client_env(), tmp_path)  # same store; nothing answers at the target any more
    assert local.data("job", "inspect", job_id)["status"] == "running"
    assert local.data("job", "cancel", job_id) == {"job_id": job_id, "status": "cancelled"}
    record = local.data("job", "inspect", job_id)
    assert record["result"] == {"reason": "forced cancellation of orphaned job"}


def test_validate_version_banner_and_completion(embedded: Mn, tmp_path: Path) -> None:
    good = write_bundle(tmp_path / "good", quick_job("cli_valid"))
    for command in (("validate",), ("bundle", "validate")):
        result = embedded(*command, str(good))
        assert result.returncode == 0 and f"✓ Job bundle at '{good}' is valid." in result.stdout
    bad = write_bundle(tmp_path / "bad", {"graph_id": "g", "nodes": []})
    assert embedded.json("validate", str(bad), code=1)["error"]["code"] == "MN_VALIDATION_FAILED"
    assert embedded("--version").stdout.strip() == "mn 0.1.0"
    banner = embedded()
    assert banner.returncode == 0 and banner.stdout.startswith("MirrorNeuron")
    script = embedded(_MN_COMPLETE="bash_source")
    assert script.returncode == 0 and "_mn_completion" in script.stdout
    words = embedded(_MN_COMPLETE="bash_complete", COMP_WORDS="mn jo", COMP_CWORD="1")
    assert "plain,job" in words.stdout.splitlines()
    sub = embedded(_MN_COMPLETE="bash_complete", COMP_WORDS="mn job can", COMP_CWORD="2")
    assert {"plain,cancel", "plain,cancel-all"} <= set(sub.stdout.splitlines())


def test_bundle_list_scans_the_local_bundles_dir(embedded: Mn, tmp_path: Path) -> None:
    write_bundle(tmp_path / "registry" / "one", quick_job("local_registered"))
    items = embedded.data("bundle", "list", MN_BUNDLES_DIR=str(tmp_path / "registry"))
    assert [b["bundle_id"] for b in items] == ["local_registered"]
