"""Workspace staging for one attempt (executor-contract.md §3, §4).

Every attempt gets a fresh directory ``<temp_dir>/mirror_neuron_<runner>_<name>_<unique>`` holding
the uploads and the five payload files; it is removed after the attempt. Staging is on the hot
path of the in-process ``python`` runner, so the common case is one ``mkdir`` plus one
open/write/close per file, and removal is five ``unlink`` plus one ``rmdir``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from dataclasses import dataclass
from typing import Any

from .._util import dumps, now_iso, sanitize_name
from ..errors import ExecutionError
from ..message import decode_stored_body, encode_body
from . import spares
from .request import RunRequest

logger = logging.getLogger(__name__)

__all__ = [
    "BODY_FILE",
    "BODY_META_FILE",
    "CONTEXT_FILE",
    "INPUT_FILE",
    "MESSAGE_FILE",
    "SANDBOX_UPLOAD_PATH",
    "Workspace",
    "host_runner_name",
    "sandbox_name",
    "sandbox_upload_path",
    "stage",
]

SANDBOX_UPLOAD_PATH = "/sandbox/job"
INPUT_FILE = "mirror_neuron_input.json"
MESSAGE_FILE = "mirror_neuron_message.json"
BODY_FILE = "mirror_neuron_body.bin"
CONTEXT_FILE = "mirror_neuron_context.json"
BODY_META_FILE = "mirror_neuron_body_meta.json"
_FILES = (INPUT_FILE, MESSAGE_FILE, BODY_FILE, CONTEXT_FILE, BODY_META_FILE)
_MAX_NAME = 63
_WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
_REWRITE_FLAGS = os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC  # a recycled file must exist and be ours
_made_dirs: set[str] = set()


def host_runner_name(config: dict[str, Any], job_id: str, agent_id: str) -> str:
    """``<name_prefix or "host-local">-<job_id>-<agent_id>``, sanitised."""
    prefix = config.get("name_prefix") or "host-local"
    return sanitize_name(f"{prefix}-{job_id}-{agent_id}")


def sandbox_name(config: dict[str, Any], job_id: str, agent_id: str, invocation: int, attempt: int) -> str:
    """Sanitised, truncated ``<prefix>-<job>-<agent>`` + ``-<sha10>-i<n>-a<m>``; at most 63 chars."""
    prefix = str(config.get("name_prefix") or "mirror-neuron")
    digest = hashlib.sha256(f"{prefix}|{job_id}|{agent_id}|{invocation}".encode()).hexdigest()[:10]
    suffix = f"-{digest}-i{invocation}-a{attempt}"
    base = sanitize_name(f"{prefix}-{job_id}-{agent_id}")
    return base[: max(_MAX_NAME - len(suffix), 1)] + suffix


def sandbox_upload_path(config: dict[str, Any]) -> str:
    path = config.get("sandbox_upload_path")
    if not isinstance(path, str) or not path.startswith("/"):
        return SANDBOX_UPLOAD_PATH
    return os.path.normpath(path)


@dataclass(slots=True)
class Workspace:
    """A staged workspace. ``remote_dir`` and ``workdir`` are paths as seen by the command."""

    name: str  # runner_name (host/python) or sandbox name (bwrap/docker)
    host_path: str
    remote_dir: str
    workdir: str
    host_workdir: str | None  # host path of ``workdir`` (None for in-sandbox paths outside the workspace)
    content_type: str
    content_encoding: str
    context: dict[str, Any]
    body: Any
    body_bytes: bytes
    simple: bool = True  # only the five files were written: removal needs no directory walk
    recycle: bool = True  # may become a spare directory after the attempt (see ``spares``)
    contents: tuple[bytes, ...] = ()  # the five files, in ``_FILES`` order

    def seen(self, filename: str) -> str:
        return f"{self.remote_dir}/{filename}"

    def remove(self) -> None:
        """Delete the workspace; never raises (a leftover directory is logged)."""
        path = self.host_path
        if self.simple and self.recycle and spares.give(os.path.dirname(path), path, _FILES):
            return
        if self.simple:
            try:
                for name in _FILES:
                    os.unlink(f"{path}/{name}")
                os.rmdir(path)
                return
            except OSError:
                pass  # the payload wrote something: fall back to a full walk
        shutil.rmtree(path, ignore_errors=True)
        if os.path.lexists(path):
            logger.warning("could not remove workspace %s (files owned by another user?)", path)


def stage(
    request: RunRequest,
    runner: str,
    name: str,
    temp_dir: str,
    *,
    remote_root: str | None = None,
    recycle: bool = True,
) -> Workspace:
    """Create the workspace for ``request``: uploads, workdir and the five files of §4.

    ``remote_root`` is the workspace path as seen by the command (``None``: the host path);
    ``recycle`` allows a spare directory to be reused (see :mod:`.spares`).
    Raises :class:`ExecutionError` with the spec's exact text for upload and encoding errors.
    """
    config = request.config
    ws = _prepare(request)  # encodes everything first: a bad body fails before anything is created
    contents = ws.contents
    uploads = _upload_specs(config)
    recycle = recycle and not uploads
    host_path, sizes = _make_dir(temp_dir, runner, name, recycle)
    recycled = sizes is not None
    if sizes is not None and not _rewrite(host_path, contents, sizes):
        shutil.rmtree(host_path, ignore_errors=True)  # not as we left it: start from scratch
        host_path, _ = _make_dir(temp_dir, runner, name, False)
        recycled = False
    remote = host_path if remote_root is None else remote_root
    ws.name, ws.host_path, ws.remote_dir, ws.workdir, ws.host_workdir = name, host_path, remote, remote, host_path
    ws.recycle = recycle
    try:
        if uploads:
            ws.simple = False
            for source, target in uploads:
                _copy_upload(request.payloads_path, host_path, source, target, sandbox_upload_path(config))
        if not recycled:
            for filename, data in zip(_FILES, contents, strict=True):
                fd = os.open(f"{host_path}/{filename}", _WRITE_FLAGS, 0o644)
                try:
                    _write_all(fd, data)
                finally:
                    os.close(fd)
        _map_workdir(ws, config, runner_is_host=remote_root is None)
    except BaseException:
        ws.simple = False
        ws.remove()
        raise
    return ws


def _prepare(request: RunRequest) -> Workspace:
    """A workspace without a directory yet: the contents of the five files of §4."""
    message = request.message
    envelope = message.get("envelope") or {}
    body = decode_stored_body(message.get("body"))
    ctype = envelope.get("content_type") or "application/json"
    cenc = envelope.get("content_encoding") or "identity"
    body_bytes = encode_body(body, ctype, cenc)  # fails the attempt on an unsupported encoding
    context = {
        "job_id": request.job_id,
        "agent_id": request.agent_id,
        "agent_type": request.agent_type,
        "template_type": request.template_type,
        "agent_state": {} if request.agent_state is None else request.agent_state,
        "timestamp": now_iso(),
    }
    ws = Workspace("", "", "", "", None, ctype, cenc, context, body, body_bytes)
    ws.contents = (
        dumps(body, indent=True),
        _message_json(message, envelope, body),
        body_bytes,
        dumps(context),
        dumps({"content_type": ctype, "content_encoding": cenc}),
    )
    return ws


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _rewrite(host_path: str, contents: tuple[bytes, ...], sizes: tuple[int, ...]) -> bool:
    """Overwrite the five files of a recycled directory in place; False if any is not as expected."""
    try:
        for filename, data, old in zip(_FILES, contents, sizes, strict=True):
            fd = os.open(f"{host_path}/{filename}", _REWRITE_FLAGS)
            try:
                _write_all(fd, data)
                if len(data) < old:
                    os.ftruncate(fd, len(data))
            finally:
                os.close(fd)
    except OSError:
        return False
    return True


def _message_json(message: dict[str, Any], envelope: dict[str, Any], body: Any) -> bytes:
    return dumps(
        {
            "envelope": {k: v for k, v in envelope.items() if v is not None},
            "headers": message.get("headers") or {},
            "body": body,
            "artifacts": message.get("artifacts") or [],
            "stream": message.get("stream"),
        }
    )


def _make_dir(temp_dir: str, runner: str, name: str, recycle: bool) -> tuple[str, tuple[int, ...] | None]:
    """A new uniquely named workspace directory and, for a recycled spare, the sizes of its files.
    Recyclable workspaces have mode 0700: their payloads run as the runtime's own user."""
    if temp_dir not in _made_dirs:
        os.makedirs(temp_dir, exist_ok=True)
        _made_dirs.add(temp_dir)
    path = f"{temp_dir}/mirror_neuron_{runner}_{name[:180]}_{os.urandom(6).hex()}"
    if recycle:
        sizes = spares.take(temp_dir, path)
        if sizes is not None:
            return path, sizes
    mode = 0o700 if recycle else 0o755  # docker images may run as another user: let them read
    try:
        os.mkdir(path, mode)
    except FileNotFoundError:  # temp_dir was removed behind our back
        os.makedirs(temp_dir, exist_ok=True)
        os.mkdir(path, mode)
    return path, None


def _map_workdir(ws: Workspace, config: dict[str, Any], *, runner_is_host: bool) -> None:
    """Apply the ``workdir`` rule of §3; creates a mapped sub-directory inside the workspace."""
    raw = config.get("workdir")
    if not raw or not isinstance(raw, str):
        return
    root = sandbox_upload_path(config)
    wanted = os.path.normpath(raw)
    if wanted == root:
        return
    if wanted.startswith(root + "/"):
        suffix = wanted[len(root) :]
        ws.workdir = ws.remote_dir + suffix
        ws.host_workdir = ws.host_path + suffix
        os.makedirs(ws.host_workdir, exist_ok=True)
        return
    ws.workdir = wanted
    ws.host_workdir = wanted if runner_is_host else None


def _upload_specs(config: dict[str, Any]) -> list[tuple[str, str | None]]:
    items = config.get("upload_paths")
    key = "upload_paths"
    if items is None:
        items, key = config.get("uploads"), "uploads"
    if items is None:
        source = config.get("upload_path")
        if not source:
            return []
        return [(str(source), config.get("upload_as") or None)]
    if not isinstance(items, list):
        raise ExecutionError(f"config.{key} must be a list of {{source, target}} objects")
    specs: list[tuple[str, str | None]] = []
    for index, item in enumerate(items):
        if isinstance(item, str):
            specs.append((item, None))
        elif isinstance(item, dict) and item.get("source"):
            specs.append((str(item["source"]), item.get("target") or None))
        else:
            raise ExecutionError(f"config.{key}[{index}] needs a source path")
    return specs


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _copy_upload(payloads: str | None, host_path: str, source: str, target: str | None, upload_root: str) -> None:
    if payloads is None:
        if not os.path.isabs(source):
            raise ExecutionError(f"upload source {source} is relative but the run has no bundle payloads/ directory")
        raise ExecutionError(f"upload source escapes payloads/: {source}")
    resolved = os.path.normpath(os.path.join(payloads, source))
    if not _inside(os.path.realpath(resolved), os.path.realpath(payloads)):
        raise ExecutionError(f"upload source escapes payloads/: {source}")
    if not os.path.exists(resolved):
        raise ExecutionError(f"upload source does not exist: {resolved}")
    name = target or os.path.basename(resolved.rstrip("/"))
    if os.path.isabs(name):
        norm = os.path.normpath(name)
        if not _inside(norm, upload_root):
            raise ExecutionError(f"upload target escapes workspace: {name}")
        name = norm[len(upload_root) :].lstrip("/") or "."
    dest = os.path.normpath(os.path.join(host_path, name))
    if not _inside(dest, host_path):
        raise ExecutionError(f"upload target escapes workspace: {name}")
    if os.path.isdir(resolved):
        shutil.copytree(resolved, dest, symlinks=True, dirs_exist_ok=True)
    else:
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        shutil.copy2(resolved, dest)
