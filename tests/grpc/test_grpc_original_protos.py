"""A client generated from the original's .proto shapes works against this server unchanged.

``original_protos/`` holds the three services as the spec fixes them (packages, services, method
names, field numbers and types; message names deliberately different). They are compiled with
grpcio-tools at test time and driven from a separate process (see ``original_client.py``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from grpc_tools import protoc
from mn_grpc_testlib import GrpcServer

pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent
PROTOS = HERE / "original_protos"


def compile_original(out: Path) -> None:
    include = Path(protoc.__file__).parent / "_proto"
    files = sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))
    assert len(files) == 3
    args = ["protoc", f"-I{PROTOS}", f"-I{include}", f"--python_out={out}", f"--grpc_python_out={out}", *files]
    assert protoc.main(args) == 0


def test_original_client_drives_every_rpc(server: GrpcServer, tmp_path: Path) -> None:
    compile_original(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, str(HERE / "original_client.py"), str(tmp_path), server.target],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen["submit"] == ["pending", 1]
    assert (seen["pause"], seen["resume"], seen["send"]) == ("paused", "running", "delivered")
    assert seen["events"][0] == "job_pending" and seen["events"][-1] == "job_completed"
    assert seen["get"] == ["agents", "job", "recent_events", "sandboxes", "summary", "version"]
    assert seen["job_id"] in seen["list"]
    assert seen["cancel_terminal"] == ["FAILED_PRECONDITION", "job is already in a terminal state"]
    assert seen["cancel_unknown"] == ["NOT_FOUND", "job nope was not found"]
    assert seen["summary_keys"] == ["jobs", "nodes", "version"]
    assert seen["resource_version"] == 1
    assert seen["set_resource_bad"] == ["INVALID_ARGUMENT", "gpu must be one of 25, 50, 75, 100"]
    assert seen["clear"] >= 1
    assert seen["later_job_rpc"][0] == "UNIMPLEMENTED"
    assert seen["later_cluster_rpc"][0] == "UNIMPLEMENTED"
