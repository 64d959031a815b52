"""A machine without a working C compiler gets the pure-Python build, not a failed install."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_failing_compiler_yields_the_pure_build(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "MNCORE_NO_EXTENSIONS"}  # it would skip the build
    env["CC"] = "/bin/false"  # every compile fails
    result = subprocess.run(
        [sys.executable, "setup.py", "-q", "build_ext", "--build-lib", str(tmp_path / "lib"),
         "--build-temp", str(tmp_path / "tmp")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "using the pure-Python build" in result.stderr
    assert not list((tmp_path / "lib").rglob("*.so"))  # nothing native was produced
