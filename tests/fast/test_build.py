"""A machine without a working C compiler gets the pure-Python build, not a failed install."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_failing_compiler_yields_the_pure_build(tmp_path: Path) -> None:
    env = {**os.environ, "CC": "/bin/false"}  # every compile fails
    result = subprocess.run(
        [sys.executable, "setup.py", "-q", "build_ext", "--build-lib", str(tmp_path / "lib"),
         "--build-temp", str(tmp_path / "tmp")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "using the pure-Python build" in result.stderr
    assert not list((tmp_path / "lib").rglob("*.so"))  # nothing native was produced
