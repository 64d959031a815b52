"""Uploaded bundles: safe zip extraction, and resolving ``_bundle_path`` (api.md §3.1, §4).

:func:`extract_upload` checks a zip before writing anything: every member must be a regular file
or a folder with a relative path that stays inside the bundle (no absolute paths, no ``..``, no
links or device files), the bundle must hold ``manifest.json`` and ``payloads/`` at the zip root
or inside one top folder, and the extracted size is capped. The bundle is extracted into a
private temporary folder under the uploads root and published with one rename as
``<uploads root>/<32 lowercase hex>/``.

:func:`resolve_uploaded` accepts a ``_bundle_path`` only when it resolves inside such a folder.
"""

from __future__ import annotations

import logging
import os
import posixpath
import shutil
import stat
import tempfile
import uuid
import zipfile
from pathlib import Path
from typing import IO, Any

from .bundle import load_bundle, parse_manifest_json
from .errors import ValidationError

logger = logging.getLogger(__name__)

__all__ = ["UNSAFE", "extract_upload", "resolve_uploaded"]

MISSING_FILE = "Missing 'bundle' file upload"
NOT_ZIP = "bundle must be a .zip file"
UNSAFE = "bundle contains unsafe paths"
INCOMPLETE = "bundle zip must contain manifest.json and payloads/"
INVALID_ZIP = "invalid zip bundle"
UNKNOWN_UPLOAD = "unknown uploaded bundle"
INVALID_UPLOAD = "invalid uploaded bundle"
_IGNORED_PREFIX = "__MACOSX/"  # resource forks added by macOS archivers
_CHUNK = 1 << 20


def extract_upload(
    fileobj: IO[bytes] | None, filename: str | None, uploads_root: str | os.PathLike[str], max_bytes: int
) -> dict[str, Any]:
    """Extract an uploaded bundle zip; ``{"bundle_path", "manifest"}`` (the manifest as uploaded).

    ``max_bytes`` caps the total extracted size. Every failure raises
    :class:`~mncore.errors.ValidationError` with the spec's message and leaves nothing behind.
    """
    if fileobj is None:
        raise ValidationError(MISSING_FILE)
    if not (filename or "").lower().endswith(".zip"):
        raise ValidationError(NOT_ZIP)
    try:
        with zipfile.ZipFile(fileobj) as archive:
            members = _checked_members(archive, max_bytes)
            prefix = _bundle_prefix([m.filename for m in members])
            return _publish(archive, members, prefix, Path(uploads_root))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError, RuntimeError) as exc:
        logger.info("rejected upload %r: %s", filename, exc)
        raise ValidationError(INVALID_ZIP) from None


def _checked_members(archive: zipfile.ZipFile, max_bytes: int) -> list[zipfile.ZipInfo]:
    members = []
    total = 0
    for info in archive.infolist():
        name = info.filename
        if name.startswith(_IGNORED_PREFIX):
            continue
        if not _safe_name(name) or not _plain_kind(info):
            raise ValidationError(UNSAFE)
        total += info.file_size
        if total > max_bytes:
            raise ValidationError(f"bundle is larger than {max_bytes} bytes once extracted; upload a smaller bundle")
        members.append(info)
    return members


def _safe_name(name: str) -> bool:
    if not name or "\x00" in name or "\\" in name:
        return False
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return False
    return ".." not in name.split("/")


def _plain_kind(info: zipfile.ZipInfo) -> bool:
    """Regular files and folders only; zips without Unix modes (``0``) count as regular."""
    kind = stat.S_IFMT(info.external_attr >> 16)
    return kind in (0, stat.S_IFREG, stat.S_IFDIR)


def _bundle_prefix(names: list[str]) -> str:
    """``""`` when the bundle is at the zip root, ``"<top>/"`` when it is inside one top folder."""
    entries = {n.rstrip("/") for n in names}
    paths = set(entries) | {posixpath.dirname(n) for n in entries}
    if "manifest.json" in entries and any(p == "payloads" for p in paths):
        return ""
    tops = {n.split("/", 1)[0] for n in entries if n}
    if len(tops) == 1:
        top = tops.pop()
        if f"{top}/manifest.json" in entries and f"{top}/payloads" in paths:
            return f"{top}/"
    raise ValidationError(INCOMPLETE)


def _publish(archive: zipfile.ZipFile, members: list[zipfile.ZipInfo], prefix: str, root: Path) -> dict[str, Any]:
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".upload-", dir=root))
    try:
        for info in members:
            _extract_one(archive, info, tmp)
        bundle_dir = tmp / prefix.rstrip("/") if prefix else tmp
        manifest = parse_manifest_json((bundle_dir / "manifest.json").read_bytes())
        load_bundle(str(bundle_dir))  # validates; errors list every problem
        dest = root / uuid.uuid4().hex
        os.rename(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    bundle_path = dest / prefix.rstrip("/") if prefix else dest
    return {"bundle_path": str(bundle_path), "manifest": manifest}


def _extract_one(archive: zipfile.ZipFile, info: zipfile.ZipInfo, dest: Path) -> None:
    target = dest.joinpath(*[p for p in info.filename.split("/") if p not in ("", ".")])
    if info.is_dir():
        target.mkdir(parents=True, exist_ok=True)
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    with archive.open(info) as src, open(target, "xb") as out:
        written = 0
        while chunk := src.read(_CHUNK):
            written += len(chunk)
            if written > info.file_size:  # a lying header: stop at the declared size
                raise ValidationError(INVALID_ZIP)
            out.write(chunk)


def resolve_uploaded(path: Any, uploads_root: str | os.PathLike[str]) -> str:
    """The real path of an uploaded bundle named by ``_bundle_path``.

    ``unknown uploaded bundle`` unless the path resolves inside ``<uploads root>/<upload id>/``;
    ``invalid uploaded bundle`` when it does but lacks ``manifest.json`` or ``payloads/``.
    """
    if not isinstance(path, str) or not path or "\x00" in path:
        raise ValidationError(UNKNOWN_UPLOAD)
    root = os.path.realpath(os.fspath(uploads_root))
    real = os.path.realpath(path)
    rel = os.path.relpath(real, root)
    first = rel.split(os.sep, 1)[0]
    if rel == os.curdir or first == os.pardir or not _is_upload_id(first) or not os.path.isdir(real):
        raise ValidationError(UNKNOWN_UPLOAD)
    if not (os.path.isfile(os.path.join(real, "manifest.json")) and os.path.isdir(os.path.join(real, "payloads"))):
        raise ValidationError(INVALID_UPLOAD)
    return real


def _is_upload_id(name: str) -> bool:
    return len(name) == 32 and all(c in "0123456789abcdef" for c in name)
