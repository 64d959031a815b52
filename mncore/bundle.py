"""Job bundles: ``manifest.json`` + ``payloads/`` (spec manifest.md §1, operations.md §8).

- :func:`load_bundle` turns any loader input of §1 (bundle, mapping, folder path, JSON text) into a
  :class:`Bundle` holding the normalised, validated manifest.
- :func:`fingerprint` hashes a bundle folder for the registry's change detection.
- :func:`write_bundle` stores a submitted manifest + payload files as a bundle folder, checking
  every payload path before anything is written and publishing the folder with one rename.

Every failure raises :class:`~mncore.errors.ManifestError` (a bad payload path:
:class:`~mncore.errors.ValidationError`); folder and JSON problems carry a single error.
"""

from __future__ import annotations

import hashlib
import ntpath
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

import orjson

from ._util import dumps
from ._validation import inspect
from .errors import ManifestError, ValidationError
from .manifest import load_manifest

__all__ = ["Bundle", "MISSING_MANIFEST", "fingerprint", "load_bundle", "parse_manifest_json", "write_bundle"]

#: the reason :func:`fingerprint` raises with when ``manifest.json`` is absent (operations.md §8)
MISSING_MANIFEST = "missing_manifest"
_PAYLOAD_PATH_ERROR = "payload path must be relative and stay inside payloads/: {}"
_BOM = "\ufeff"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Bundle:
    """A loaded bundle; the paths are absolute, or all ``None`` for a manifest given as data."""

    root_path: str | None
    manifest_path: str | None
    payloads_path: str | None
    manifest: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "root_path": self.root_path,
            "manifest_path": self.manifest_path,
            "payloads_path": self.payloads_path,
            "manifest": self.manifest,
        }


BundleSource = Bundle | Mapping[str, Any] | str | bytes | os.PathLike[str]


def load_bundle(source: BundleSource) -> Bundle:
    """Load per spec §1: a bundle is returned unchanged, a mapping is validated as a manifest, a
    string naming a directory is loaded as a folder, one naming a file is refused, and any other
    string (or ``bytes``) is parsed as manifest JSON text. An ``os.PathLike`` is always a path:
    one that does not exist is reported as such instead of being parsed as JSON (ours)."""
    if isinstance(source, Bundle):
        return source
    if isinstance(source, Mapping):
        return Bundle(None, None, None, load_manifest(source))
    if isinstance(source, os.PathLike):
        path = _absolute(os.fsdecode(source))
        if not os.path.lexists(path):
            raise ManifestError([f"job folder does not exist: {path}"])
        return _load_path(path)
    if isinstance(source, str):
        path = _absolute(source)
        if source and os.path.exists(path):  # "" would name the working directory
            return _load_path(path)
        return Bundle(None, None, None, _manifest_from_json(source, "manifest JSON"))
    if isinstance(source, (bytes, bytearray, memoryview)):
        return Bundle(None, None, None, _manifest_from_json(bytes(source), "manifest JSON"))
    raise ManifestError(
        [f"cannot load a bundle from {type(source).__name__}; pass a job folder, manifest JSON text or a mapping"]
    )


def _absolute(path: str) -> str:
    return os.path.abspath(os.path.expanduser(path))


def _load_path(path: str) -> Bundle:
    if not os.path.isdir(path):
        raise ManifestError([f"expected a job folder, got file {path}"])
    manifest_path = os.path.join(path, "manifest.json")
    payloads_path = os.path.join(path, "payloads")
    if not os.path.isfile(manifest_path):
        raise ManifestError([f"job folder is missing manifest.json: {manifest_path}"])
    if not os.path.isdir(payloads_path):
        raise ManifestError([f"job folder is missing payloads/: {payloads_path}"])
    try:
        with open(manifest_path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise ManifestError([f"cannot read {manifest_path}: {exc.strerror or exc}"]) from exc
    return Bundle(path, manifest_path, payloads_path, _manifest_from_json(data, manifest_path))


def _manifest_from_json(text: str | bytes, source: str) -> dict[str, Any]:
    value = parse_manifest_json(text)
    if not isinstance(value, dict):
        raise ManifestError([f"{source} must contain a JSON object, got {inspect(value)}"])
    return load_manifest(value)


def parse_manifest_json(text: str | bytes) -> Any:
    """Parse JSON text; errors read ``unexpected byte at position <n>: <detail>``.

    ``<n>`` is the 0-based **byte** offset into the UTF-8 text (the same number for a file and
    for the text it holds). A leading UTF-8 byte order mark is ignored.
    """
    if isinstance(text, (bytes, bytearray, memoryview)):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ManifestError([f"unexpected byte at position {exc.start}: invalid UTF-8 ({exc.reason})"]) from exc
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:  # lone surrogates in a Python str
        raise _json_error(text, exc.start, "invalid UTF-8 (lone surrogate)") from exc
    skip = 1 if text.startswith(_BOM) else 0
    try:
        return orjson.loads(text[skip:])
    except orjson.JSONDecodeError as exc:  # exc.pos counts code points
        raise _json_error(text, exc.pos + skip, exc.msg) from exc


def _json_error(text: str, char_pos: int, detail: str) -> ManifestError:
    byte_pos = len(text[:char_pos].encode("utf-8", "surrogatepass"))
    line = text.count("\n", 0, char_pos) + 1
    column = char_pos - (text.rfind("\n", 0, char_pos) + 1) + 1
    return ManifestError([f"unexpected byte at position {byte_pos}: {detail} (line {line}, column {column})"])


# -- fingerprint -------------------------------------------------------------------------------


def fingerprint(root_path: str | os.PathLike[str]) -> str:
    """SHA-256 (lowercase hex) over ``"manifest.json"`` + its bytes, then, for every regular file
    under ``payloads/`` in sorted order of its POSIX relative path, that path + the file's bytes.

    Symlinks are neither followed nor hashed (only regular files count); a missing ``payloads/``
    hashes as empty. Raises ``ManifestError("missing_manifest")`` when ``manifest.json`` is absent
    (``str(exc)`` is the reason for ``Fingerprint failed: <reason>``) and ``ManifestError`` naming
    the path when a file cannot be read.
    """
    root = os.fspath(root_path)
    manifest_path = os.path.join(root, "manifest.json")
    if not os.path.isfile(manifest_path):
        raise ManifestError(MISSING_MANIFEST)
    digest = hashlib.sha256(b"manifest.json")
    _feed(digest, manifest_path)
    payloads = os.path.join(root, "payloads")
    for rel, full in sorted(_regular_files(payloads)):
        digest.update(rel)
        _feed(digest, full)
    return digest.hexdigest()


def _regular_files(payloads: str) -> Iterator[tuple[bytes, str]]:
    """(relative POSIX path as bytes, absolute path) of every regular file under ``payloads``."""
    if not os.path.isdir(payloads):
        return

    def fail(exc: OSError) -> NoReturn:
        raise ManifestError(f"cannot read {exc.filename}: {exc.strerror or exc}") from exc

    for folder, _dirs, files in os.walk(payloads, onerror=fail):
        for name in files:
            full = os.path.join(folder, name)
            try:
                mode = os.lstat(full).st_mode
            except OSError as exc:
                fail(exc)
            if stat.S_ISREG(mode):
                rel = os.path.relpath(full, payloads).replace(os.sep, "/")
                yield os.fsencode(rel), full


def _feed(digest: Any, path: str) -> None:
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
    except OSError as exc:
        raise ManifestError(f"cannot read {path}: {exc.strerror or exc}") from exc


# -- write_bundle ------------------------------------------------------------------------------


def write_bundle(
    dest_dir: str | os.PathLike[str],
    manifest: Mapping[str, Any],
    payloads: Mapping[str, bytes | str] | None = None,
    *,
    durable: bool = True,
) -> Bundle:
    """Write ``manifest.json`` (the manifest as given) and ``payloads/`` at ``dest_dir``.

    Checks first, writes after: the manifest must validate (``ManifestError``), every payload key
    must be a relative path staying inside ``payloads/`` and must not clash with another key
    (``ValidationError``), and ``dest_dir`` must not exist or be an empty folder. Files are written
    to a sibling temporary folder (mode 0700), fsynced when ``durable``, then renamed into place,
    so a crash never leaves a half-written bundle. Text payloads are stored as UTF-8.
    """
    normalised = load_manifest(manifest)
    manifest_bytes = dumps(manifest, indent=True)  # load_manifest checked it serialises
    files = _checked_payloads(payloads or {})
    dest = os.path.abspath(os.fspath(dest_dir))
    if os.path.lexists(dest) and not (os.path.isdir(dest) and not os.listdir(dest)):
        raise ValidationError(f"bundle destination already exists and is not an empty folder: {dest}")
    parent = os.path.dirname(dest)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(dest)}.", suffix=".tmp", dir=parent)
    try:
        _write_file(os.path.join(tmp, "manifest.json"), manifest_bytes, durable)
        folders = {os.path.join(tmp, "payloads")}
        os.mkdir(os.path.join(tmp, "payloads"))
        for parts, data in files:
            folder = os.path.join(tmp, "payloads", *parts[:-1])
            os.makedirs(folder, exist_ok=True)
            folders.add(folder)
            _write_file(os.path.join(folder, parts[-1]), data, durable)
        if durable:
            for folder in sorted(folders, key=len, reverse=True):
                _fsync_dir(folder)
            _fsync_dir(tmp)
        os.rename(tmp, dest)  # replaces an empty dest folder atomically on POSIX
        if durable:
            _fsync_dir(parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Bundle(dest, os.path.join(dest, "manifest.json"), os.path.join(dest, "payloads"), normalised)


def _checked_payloads(payloads: Mapping[str, bytes | str]) -> list[tuple[tuple[str, ...], bytes]]:
    """Validate every key and value; ``[(path parts, bytes)]`` in the given order."""
    files: list[tuple[tuple[str, ...], bytes]] = []
    for key, value in payloads.items():
        files.append((_payload_parts(key), _payload_bytes(key, value)))
    seen: set[tuple[str, ...]] = set()
    folders: set[tuple[str, ...]] = set()
    for parts, _ in files:
        folders.update(parts[:i] for i in range(1, len(parts)))
    for (parts, _), key in zip(files, payloads, strict=True):
        if parts in seen or parts in folders:
            raise ValidationError(f"payload path {key} clashes with another payload path; give each file one path")
        seen.add(parts)
    return files


def _payload_parts(key: Any) -> tuple[str, ...]:
    """The path parts of a payload key; ``\\`` counts as a separator, ``.`` parts are dropped."""
    if not isinstance(key, str) or "\x00" in key:
        raise ValidationError(_PAYLOAD_PATH_ERROR.format(key if isinstance(key, str) else inspect(key)))
    posix = key.replace("\\", "/")
    parts = tuple(part for part in posix.split("/") if part not in ("", "."))
    if posix.startswith("/") or ntpath.splitdrive(key)[0] or not parts or ".." in parts:
        raise ValidationError(_PAYLOAD_PATH_ERROR.format(key))
    return parts


def _payload_bytes(key: str, value: Any) -> bytes:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8")
    raise ValidationError(f"payload {key} must be bytes or text, got {type(value).__name__}")


def _write_file(path: str, data: bytes, durable: bool) -> None:
    with open(path, "xb") as handle:
        handle.write(data)
        if durable:
            handle.flush()
            os.fsync(handle.fileno())


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
