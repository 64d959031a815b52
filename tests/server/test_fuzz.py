"""Schema-driven fuzzing: schemathesis against the served OpenAPI document of a real ``mn server``.

Passes when no request gets a 500 and every response matches the document (status codes,
content types, bodies, headers, 405 ``Allow``). Bounded: a fixed seed and a few dozen cases per
operation keep it well under a minute.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

import pytest
from mn_server_testlib import API, ServerProcess

pytestmark = pytest.mark.slow

CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
        "response_headers_conformance",
        "unsupported_method",
        "allow_header_conformance",
        "missing_required_header",
        "use_after_free",
        "ensure_resource_availability",
    ]
)


def test_schemathesis_finds_no_server_errors_or_schema_violations(server_factory: Callable[..., ServerProcess]) -> None:
    pytest.importorskip("schemathesis")
    server = server_factory()
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        f"{server.base_url}{API}/openapi.json",
        "--checks",
        CHECKS,
        "--phases",
        "examples,coverage,fuzzing,stateful",
        "--max-examples",
        "25",
        "--seed",
        "20261128",
        "--no-shrink",
        "--request-timeout",
        "10",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=90, cwd=server.workdir)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert "failed unexpectedly" not in server.log(), server.log()[-4000:]
    assert server.stop() == 0
