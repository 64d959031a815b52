"""Workspace staging (executor-contract.md §3, §4) on the real filesystem."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from execution_helpers import make_request

from mncore.errors import ExecutionError
from mncore.execution import spares
from mncore.execution.workspace import host_runner_name, sandbox_name, stage


def test_host_runner_name_is_sanitised() -> None:
    assert host_runner_name({}, "Job_1.X", "Agent A") == "host-local-job-1-x-agent-a"
    assert host_runner_name({"name_prefix": "My"}, "j", "a") == "my-j-a"


def test_sandbox_name_has_hash_invocation_and_attempt_and_fits_63_chars() -> None:
    digest = hashlib.sha256(b"mirror-neuron|job-1|worker|3").hexdigest()[:10]
    assert sandbox_name({}, "job-1", "worker", 3, 2) == f"mirror-neuron-job-1-worker-{digest}-i3-a2"
    long = sandbox_name({}, "j" * 100, "Agent/X" * 10, 12, 7)
    assert len(long) == 63 and long.endswith("-i12-a7")
    assert sandbox_name({}, "j", "a", 1, 1) != sandbox_name({}, "j", "a", 1, 2)
    assert sandbox_name({"name_prefix": "pfx"}, "j", "a", 1, 1).startswith("pfx-j-a-")


def _files(path: str) -> dict[str, bytes]:
    return {name: (Path(path) / name).read_bytes() for name in sorted(os.listdir(path))}


def test_stage_writes_the_five_files(tmp_path: Path) -> None:
    request = make_request({}, {"x": [1, 2]}, agent_state={"k": 1}, template_type="map", agent_type="executor")
    ws = stage(request, "host", "name", str(tmp_path))
    try:
        assert ws.host_path.startswith(f"{tmp_path}/mirror_neuron_host_name_")
        files = _files(ws.host_path)
        assert set(files) == {
            "mirror_neuron_input.json",
            "mirror_neuron_message.json",
            "mirror_neuron_body.bin",
            "mirror_neuron_context.json",
            "mirror_neuron_body_meta.json",
        }
        assert files["mirror_neuron_input.json"].decode() == '{\n  "x": [\n    1,\n    2\n  ]\n}'
        message = json.loads(files["mirror_neuron_message.json"])
        assert set(message) == {"envelope", "headers", "body", "artifacts", "stream"}
        assert message["body"] == {"x": [1, 2]} and message["envelope"]["type"] == "task"
        assert None not in message["envelope"].values()
        assert json.loads(files["mirror_neuron_body.bin"]) == {"x": [1, 2]}
        context = json.loads(files["mirror_neuron_context.json"])
        assert context["job_id"] == "job-1" and context["agent_id"] == "worker"
        assert context["agent_type"] == "executor" and context["template_type"] == "map"
        assert context["agent_state"] == {"k": 1} and context["timestamp"].endswith("Z")
        meta = json.loads(files["mirror_neuron_body_meta.json"])
        assert meta == {"content_type": "application/json", "content_encoding": "identity"}
    finally:
        ws.remove()
    assert not os.path.exists(ws.host_path)


def test_bytes_body_and_gzip_encoding(tmp_path: Path) -> None:
    raw = b"\xff\x00binary"
    request = make_request({}, raw, envelope={"content_type": "application/octet-stream", "content_encoding": "gzip"})
    ws = stage(request, "host", "n", str(tmp_path))
    try:
        files = _files(ws.host_path)
        assert gzip.decompress(files["mirror_neuron_body.bin"]) == raw
        assert json.loads(files["mirror_neuron_input.json"]) == {"$bytes": "/wBiaW5hcnk="}
        assert json.loads(files["mirror_neuron_body_meta.json"])["content_encoding"] == "gzip"
    finally:
        ws.remove()


def test_unsupported_content_encoding_fails_staging(tmp_path: Path) -> None:
    request = make_request({}, {"a": 1}, envelope={"content_encoding": "br"})
    with pytest.raises(ExecutionError, match='^unsupported content_encoding "br"$'):
        stage(request, "host", "n", str(tmp_path))
    assert os.listdir(tmp_path) == []


@pytest.fixture
def payloads(tmp_path: Path) -> Path:
    root = tmp_path / "bundle" / "payloads"
    (root / "pkg" / "sub").mkdir(parents=True)
    (root / "pkg" / "a.txt").write_text("A")
    (root / "pkg" / "sub" / "b.txt").write_text("B")
    (root / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (root / "run.sh").chmod(0o755)
    (tmp_path / "bundle" / "secret.txt").write_text("outside")
    return root


def _stage_uploads(tmp_path: Path, payloads: Path, config: dict[str, Any]) -> str:
    ws = stage(make_request(config, payloads_path=str(payloads)), "host", "n", str(tmp_path / "ws"))
    listing = sorted(
        str(p.relative_to(ws.host_path)) for p in Path(ws.host_path).rglob("*") if "mirror_neuron" not in p.name
    )
    ws.remove()
    return "\n".join(listing)


def test_upload_paths_files_dirs_and_targets(tmp_path: Path, payloads: Path) -> None:
    config = {"upload_paths": [{"source": "pkg"}, {"source": "run.sh", "target": "bin/go.sh"}]}
    assert _stage_uploads(tmp_path, payloads, config).split("\n") == [
        "bin", "bin/go.sh", "pkg", "pkg/a.txt", "pkg/sub", "pkg/sub/b.txt",
    ]  # fmt: skip
    ws = stage(make_request(config, payloads_path=str(payloads)), "host", "n", str(tmp_path / "ws"))
    try:
        assert os.access(f"{ws.host_path}/bin/go.sh", os.X_OK)
    finally:
        ws.remove()


def test_uploads_alias_and_upload_path_with_upload_as(tmp_path: Path, payloads: Path) -> None:
    assert _stage_uploads(tmp_path, payloads, {"uploads": [{"source": "pkg/a.txt"}]}) == "a.txt"
    assert _stage_uploads(tmp_path, payloads, {"upload_path": "pkg/sub", "upload_as": "data"}) == "data\ndata/b.txt"
    assert _stage_uploads(tmp_path, payloads, {"upload_path": "run.sh"}) == "run.sh"
    sandbox_target = {"upload_paths": [{"source": "run.sh", "target": "/sandbox/job/tools/run.sh"}]}
    assert _stage_uploads(tmp_path, payloads, sandbox_target) == "tools\ntools/run.sh"


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"upload_paths": [{"source": "nope.txt"}]}, "upload source does not exist: {payloads}/nope.txt"),
        ({"upload_path": "../secret.txt"}, "upload source escapes payloads/: ../secret.txt"),
        ({"upload_paths": [{"source": "/etc/hostname"}]}, "upload source escapes payloads/: /etc/hostname"),
        ({"upload_paths": [{"source": "run.sh", "target": "../../x"}]}, "upload target escapes workspace: ../../x"),
        ({"upload_paths": [{"source": "run.sh", "target": "/etc/x"}]}, "upload target escapes workspace: /etc/x"),
    ],
)
def test_upload_errors_are_exact(tmp_path: Path, payloads: Path, config: dict[str, Any], message: str) -> None:
    request = make_request(config, payloads_path=str(payloads))
    with pytest.raises(ExecutionError) as info:
        stage(request, "host", "n", str(tmp_path / "ws"))
    assert str(info.value) == message.format(payloads=payloads)
    assert os.listdir(tmp_path / "ws") == []  # the half-staged workspace is gone


def test_symlink_escaping_payloads_is_rejected(tmp_path: Path, payloads: Path) -> None:
    (payloads / "link").symlink_to(tmp_path / "bundle" / "secret.txt")
    request = make_request({"upload_path": "link"}, payloads_path=str(payloads))
    with pytest.raises(ExecutionError, match="^upload source escapes payloads/: link$"):
        stage(request, "host", "n", str(tmp_path / "ws"))


@pytest.mark.parametrize(
    ("workdir", "remote_root", "expected"),
    [
        (None, "/sandbox/job", "/sandbox/job"),
        ("/sandbox/job", "/sandbox/job", "/sandbox/job"),
        ("/sandbox/job/", "/sandbox/job", "/sandbox/job"),
        ("/sandbox/job/sub/dir", "/sandbox/job", "/sandbox/job/sub/dir"),
        ("/opt/work", "/sandbox/job", "/opt/work"),
        (None, None, "{host}"),
        ("/sandbox/job/sub", None, "{host}/sub"),
        ("/srv", None, "/srv"),
    ],
)
def test_workdir_mapping(tmp_path: Path, workdir: str | None, remote_root: str | None, expected: str) -> None:
    config = {} if workdir is None else {"workdir": workdir}
    ws = stage(make_request(config), "bwrap", "n", str(tmp_path), remote_root=remote_root)
    try:
        assert ws.workdir == expected.format(host=ws.host_path)
        if workdir and workdir.startswith("/sandbox/job/") and workdir.strip("/") != "sandbox/job":
            assert os.path.isdir(ws.host_path + workdir[len("/sandbox/job") :].rstrip("/"))
    finally:
        ws.remove()


def test_remove_handles_files_written_by_the_payload(tmp_path: Path) -> None:
    ws = stage(make_request({}), "host", "n", str(tmp_path))
    (Path(ws.host_path) / "out" / "deep").mkdir(parents=True)
    (Path(ws.host_path) / "out" / "deep" / "f").write_text("x")
    ws.remove()
    assert not os.path.exists(ws.host_path)


@pytest.fixture
def fresh_spares(tmp_path: Path) -> Iterator[str]:
    temp = str(tmp_path / "spares")
    yield temp
    spares._pools.pop(temp, None)


def _spares_in(temp: str) -> list[str]:
    return [n for n in os.listdir(temp) if n.startswith("mirror_neuron_spare_")]


def test_pristine_workspace_is_recycled_with_fresh_contents(fresh_spares: str) -> None:
    first = stage(make_request({}, {"long": "x" * 5000}), "host", "n", fresh_spares)
    inode = os.stat(first.host_path).st_ino
    first.remove()
    assert not os.path.exists(first.host_path)
    (spare,) = _spares_in(fresh_spares)
    assert os.stat(f"{fresh_spares}/{spare}").st_mode & 0o777 == 0o700
    second = stage(make_request({}, {"short": 1}), "host", "n", fresh_spares)
    try:
        assert os.stat(second.host_path).st_ino == inode and second.host_path != first.host_path
        assert os.stat(second.host_path).st_mode & 0o777 == 0o700
        assert json.loads(Path(second.host_path, "mirror_neuron_input.json").read_text()) == {"short": 1}
        assert Path(second.host_path, "mirror_neuron_body.bin").read_bytes() == b'{"short":1}'
        assert _spares_in(fresh_spares) == []
    finally:
        second.remove()


@pytest.mark.parametrize("tamper", ["extra_file", "hard_link", "symlink", "chmod_file", "chmod_dir", "subdir"])
def test_tampered_workspace_is_deleted_not_recycled(fresh_spares: str, tmp_path: Path, tamper: str) -> None:
    ws = stage(make_request({}), "host", "n", fresh_spares)
    path = Path(ws.host_path)
    if tamper == "extra_file":
        (path / "out.txt").write_text("payload output")
    elif tamper == "hard_link":
        os.link(path / "mirror_neuron_input.json", tmp_path / "peek")
    elif tamper == "symlink":
        (path / "mirror_neuron_context.json").unlink()
        (path / "mirror_neuron_context.json").symlink_to(tmp_path / "target")
    elif tamper == "chmod_file":
        (path / "mirror_neuron_body.bin").chmod(0o666)
    elif tamper == "chmod_dir":
        path.chmod(0o777)
    else:
        (path / "d").mkdir()
    ws.remove()
    assert not path.exists() and os.listdir(fresh_spares) == []


def test_recycling_can_be_turned_off(fresh_spares: str) -> None:
    ws = stage(make_request({}), "docker", "n", fresh_spares, recycle=False)
    ws.remove()
    assert os.listdir(fresh_spares) == []


def test_spares_of_dead_processes_are_swept(fresh_spares: str) -> None:
    os.makedirs(f"{fresh_spares}/mirror_neuron_spare_999999999_abc")
    os.makedirs(f"{fresh_spares}/mirror_neuron_spare_{os.getpid()}_def")
    stage(make_request({}), "host", "n", fresh_spares).remove()
    assert f"mirror_neuron_spare_{os.getpid()}_def" in os.listdir(fresh_spares)
    assert "mirror_neuron_spare_999999999_abc" not in os.listdir(fresh_spares)
