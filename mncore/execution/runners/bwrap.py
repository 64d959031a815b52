"""The ``bwrap`` runner: bubblewrap sandbox built exactly as executor-contract.md §15.

Read-only host root (one ``--ro-bind`` per top-level directory, ``--symlink`` per top-level
link, on bwrap's own tmpfs root), private ``/dev``, ``/proc`` and ``/tmp``, the workspace bound
at ``sandbox_upload_path``, tmpfs over ``MN_DATA_DIR`` and ``MN_HOME``, all namespaces unshared
(network only with ``network: true``), and a cleared environment. The ``--clearenv``/``--setenv``
part is passed through ``--args <memfd>`` so that secret values never appear in the host's
process list; the argument vector is otherwise identical.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from typing import Any

from ...config import Settings
from ..beacons import BeaconMonitor
from ..environment import MINIMAL_ENV, truthy
from ..output import StreamCapture
from ..process import ProcessResult, run_process
from ..request import RunRequest
from ..workspace import SANDBOX_UPLOAD_PATH, Workspace, sandbox_upload_path
from .base import SubprocessRunner

__all__ = ["BwrapRunner", "bwrap_args", "env_args", "probe_bwrap"]

_PROBE_TIMEOUT_S = 15.0
_probe_cache: dict[tuple[str, str, str, str], tuple[bool, str]] = {}
_root_cache: list[Any] = [None, []]


def _root_entries() -> list[tuple[str, str | None]]:
    """Top-level host entries as ``(path, symlink target or None)``; cached until ``/`` changes."""
    stamp = os.stat("/").st_mtime_ns
    if _root_cache[0] != stamp:
        entries: list[tuple[str, str | None]] = []
        with os.scandir("/") as it:
            for entry in sorted(it, key=lambda e: e.name):
                path = "/" + entry.name
                if entry.is_symlink():
                    entries.append((path, os.readlink(path)))
                elif entry.is_dir(follow_symlinks=False):
                    entries.append((path, None))
        _root_cache[0], _root_cache[1] = stamp, entries
    return list(_root_cache[1])


def bwrap_args(
    *,
    workspace: str,
    workdir: str,
    data_dir: str | None,
    home: str | None,
    network: bool = False,
    upload_root: str = SANDBOX_UPLOAD_PATH,
) -> list[str]:
    """The options of §15 up to ``--new-session`` (the environment follows, see :func:`env_args`)."""
    skip = {"/dev", "/proc", "/tmp", "/" + upload_root.strip("/").split("/")[0]}
    args: list[str] = []
    for path, target in _root_entries():
        if path in skip:
            continue
        if target is not None:
            args += ["--symlink", target, path]
        else:
            args += ["--ro-bind", path, path]
    args += ["--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp", "--bind", workspace, upload_root]
    hidden_dirs = ["/tmp"]
    for hidden in (data_dir, home):
        # a directory that does not exist holds nothing to hide (and bwrap could not mount on it)
        if hidden and os.path.isdir(hidden):
            args += ["--tmpfs", os.path.realpath(hidden)]
            hidden_dirs.append(os.path.realpath(hidden))
    args += _interpreter_binds(hidden_dirs)
    args += ["--chdir", workdir, "--unshare-all"]
    if network:
        args.append("--share-net")
    args += ["--die-with-parent", "--new-session"]
    return args


def _interpreter_binds(hidden_dirs: list[str]) -> list[str]:
    """Keep the runtime's own interpreter visible (the python fallback of §6 runs it) when a
    private ``/tmp`` or a hidden directory would cover it, e.g. a virtualenv under ``/tmp``."""
    args: list[str] = []
    for root in dict.fromkeys(os.path.realpath(p) for p in (sys.prefix, sys.base_prefix)):
        if any(root == d or root.startswith(d.rstrip("/") + "/") for d in hidden_dirs):
            args += ["--ro-bind", root, root]
    return args


def env_args(env: dict[str, str]) -> list[str]:
    args = ["--clearenv"]
    for key, value in env.items():
        args += ["--setenv", key, value]
    return args


def _memfd_args(args: list[str]) -> int:
    """A sealed-by-convention in-memory file with NUL-terminated ``args`` for ``bwrap --args``."""
    fd = os.memfd_create("mn-bwrap-args", os.MFD_CLOEXEC)
    data = b"".join(a.encode("utf-8", "surrogateescape") + b"\0" for a in args)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def probe_bwrap(settings: Settings) -> tuple[bool, str]:
    """Run ``true`` in a sandbox built exactly as for payloads; cached once per process."""
    key = (settings.bwrap_bin, settings.temp_dir, settings.data_dir, settings.home)
    if key not in _probe_cache:
        _probe_cache[key] = _probe(settings)
    return _probe_cache[key]


def _probe(settings: Settings) -> tuple[bool, str]:
    binary = shutil.which(settings.bwrap_bin)
    if binary is None:
        return False, f"bubblewrap binary {settings.bwrap_bin!r} not found (set MN_BWRAP_BIN)"
    try:
        os.makedirs(settings.temp_dir, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="mirror_neuron_bwrap_probe_", dir=settings.temp_dir) as ws:
            args = bwrap_args(workspace=ws, workdir=SANDBOX_UPLOAD_PATH, data_dir=settings.data_dir, home=settings.home)
            proc = subprocess.run(
                [binary, *args, *env_args(dict(MINIMAL_ENV)), "--", "true"],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=_PROBE_TIMEOUT_S,
                check=False,
            )
    except (OSError, subprocess.SubprocessError) as exc:
        return False, f"bubblewrap probe failed: {exc}"
    if proc.returncode != 0:
        detail = proc.stderr.decode("utf-8", "replace").strip() or f"exit status {proc.returncode}"
        return False, f"bubblewrap probe failed: {detail}"
    return True, ""


class BwrapRunner(SubprocessRunner):
    name = "bwrap"

    @classmethod
    def available(cls, settings: Settings) -> tuple[bool, str]:
        return probe_bwrap(settings)

    def base_env(self) -> dict[str, str]:
        return dict(MINIMAL_ENV)

    async def execute(
        self,
        request: RunRequest,
        ws: Workspace,
        env: dict[str, str],
        argv: list[str],
        captures: tuple[StreamCapture, StreamCapture],
        timeout: float | None,
        beacons: BeaconMonitor,
        notes: list[str],
    ) -> tuple[ProcessResult, int]:
        binary = shutil.which(self.settings.bwrap_bin)
        if binary is None:
            raise FileNotFoundError(2, "bubblewrap binary not found (set MN_BWRAP_BIN)", self.settings.bwrap_bin)
        args = bwrap_args(
            workspace=ws.host_path,
            workdir=ws.workdir,
            data_dir=self.settings.data_dir,
            home=self.settings.home,
            network=truthy(request.config.get("network")),
            upload_root=sandbox_upload_path(request.config),
        )
        fd = _memfd_args(env_args(env))
        try:
            result = await run_process(
                [binary, *args, "--args", str(fd), "--", *argv],
                cwd=ws.host_path,
                env={"PATH": MINIMAL_ENV["PATH"]},
                stdout=captures[0],
                stderr=captures[1],
                timeout=timeout,
                beacons=beacons,
                pass_fds=(fd,),
            )
        finally:
            os.close(fd)
        return result, result.exit_code
