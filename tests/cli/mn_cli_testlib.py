"""Running ``mn`` as a subprocess and reading its ``mn.cli/v1`` envelopes."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from mn_grpc_testlib import mn_command


class Mn:
    """``mn(*args)`` → CompletedProcess; ``json(*args)`` → the parsed envelope (asserts the exit code)."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.env = env
        self.cwd = cwd

    def __call__(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*mn_command(), *args],
            env={**self.env, "MN_CLI_OUTPUT": "plain", "COLUMNS": "200", **env},
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def json(self, *args: str, code: int = 0, **env: str) -> dict[str, Any]:
        """The envelope of ``mn ARGS --json``; ``code`` is the expected exit status."""
        return self._envelope(args, code, env)

    def _envelope(self, args: tuple[str, ...], code: int, env: dict[str, str]) -> dict[str, Any]:
        result = self(*args, "--json", **env)
        assert result.returncode == code, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
        envelope: dict[str, Any] = json.loads(result.stdout)
        assert envelope["schema"] == "mn.cli/v1"
        assert envelope["ok"] is (code == 0)
        return envelope

    def data(self, *args: str, **env: str) -> Any:
        return self._envelope(args, 0, env)["data"]

    def stream(self, *args: str, code: int = 0) -> list[dict[str, Any]]:
        result = self(*args, "--json")
        assert result.returncode == code, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
        items = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
        assert all(item["schema"] == "mn.cli.stream/v1" for item in items)
        return items


def write_bundle(root: Path, manifest: dict[str, Any], files: dict[str, bytes] | None = None) -> Path:
    (root / "payloads").mkdir(parents=True, exist_ok=True)
    (root / "manifest.json").write_text(json.dumps(manifest))
    for name, data in (files or {}).items():
        path = root / "payloads" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root
