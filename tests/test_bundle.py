from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

from mncore._util import dumps, loads
from mncore.bundle import Bundle, fingerprint, load_bundle, parse_manifest_json, write_bundle
from mncore.errors import ManifestError, ValidationError
from mncore.manifest import load_manifest

MANIFEST: dict[str, Any] = {
    "manifest_version": "1.0",
    "graph_id": "demo",
    "nodes": [
        {"node_id": "start", "agent_type": "relay", "role": "root"},
        {"node_id": "sink", "agent_type": "aggregator", "config": {"complete_after": 1}},
    ],
    "edges": [{"edge_id": "e", "from_node": "start", "to_node": "sink", "message_type": "*"}],
}


def make_folder(root: Path, manifest: Any = MANIFEST, files: dict[str, bytes] | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    data = manifest if isinstance(manifest, bytes) else dumps(manifest)
    (root / "manifest.json").write_bytes(data)
    (root / "payloads").mkdir(exist_ok=True)
    for rel, content in (files or {}).items():
        target = root / "payloads" / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    return root


def single_error(source: Any) -> str:
    with pytest.raises(ManifestError) as info:
        load_bundle(source)
    assert len(info.value.errors) == 1
    return info.value.errors[0]


# -- load_bundle: one test per loader input row ------------------------------------------------


def test_loaded_bundle_is_returned_unchanged() -> None:
    bundle = load_bundle(MANIFEST)
    assert load_bundle(bundle) is bundle


def test_mapping_is_validated_with_null_paths() -> None:
    bundle = load_bundle(MANIFEST)
    assert (bundle.root_path, bundle.manifest_path, bundle.payloads_path) == (None, None, None)
    assert bundle.manifest == load_manifest(MANIFEST)
    assert bundle.manifest["nodes"][0]["agent_type"] == "router"


def test_already_validated_manifest_is_wrapped_unchanged() -> None:
    manifest = load_manifest(MANIFEST)
    assert load_bundle(manifest).manifest == manifest


def test_invalid_mapping_raises_every_error() -> None:
    with pytest.raises(ManifestError) as info:
        load_bundle({"nodes": []})
    assert info.value.errors[:3] == ["manifest_version is required", "graph_id is required", "nodes must not be empty"]


def test_directory_string_loads_folder_with_absolute_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_folder(tmp_path / "b")
    monkeypatch.chdir(tmp_path)
    bundle = load_bundle("b")
    root = str(tmp_path / "b")
    assert bundle.root_path == root
    assert bundle.manifest_path == os.path.join(root, "manifest.json")
    assert bundle.payloads_path == os.path.join(root, "payloads")
    assert bundle.manifest == load_manifest(MANIFEST)
    assert bundle.to_dict() == {
        "root_path": root,
        "manifest_path": bundle.manifest_path,
        "payloads_path": bundle.payloads_path,
        "manifest": bundle.manifest,
    }


def test_pathlike_and_home_relative_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_folder(tmp_path / "b")
    assert load_bundle(tmp_path / "b").root_path == str(tmp_path / "b")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert load_bundle("~/b").root_path == str(tmp_path / "b")


def test_string_naming_a_file_is_refused_with_absolute_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_folder(tmp_path / "b")
    monkeypatch.chdir(tmp_path / "b")
    expected = f"expected a job folder, got file {tmp_path / 'b' / 'manifest.json'}"
    assert single_error("manifest.json") == expected
    assert single_error(Path("manifest.json")) == expected


def test_other_string_is_parsed_as_json_text() -> None:
    bundle = load_bundle(dumps(MANIFEST).decode())
    assert bundle.root_path is None
    assert bundle.manifest == load_manifest(MANIFEST)
    assert load_bundle(dumps(MANIFEST)).manifest == bundle.manifest  # bytes are JSON text too


def test_missing_path_string_is_parsed_as_json(tmp_path: Path) -> None:
    error = single_error("does/not/exist")
    assert error.startswith("unexpected byte at position 0: ")
    assert single_error(str(tmp_path / "nope")).startswith("unexpected byte at position 0: ")


def test_missing_pathlike_is_reported_as_missing_folder(tmp_path: Path) -> None:
    assert single_error(tmp_path / "nope") == f"job folder does not exist: {tmp_path / 'nope'}"


def test_unsupported_source_type() -> None:
    assert single_error(42).startswith("cannot load a bundle from int")


# -- folder errors -----------------------------------------------------------------------------


def test_folder_missing_manifest(tmp_path: Path) -> None:
    (tmp_path / "payloads").mkdir()
    assert single_error(str(tmp_path)) == f"job folder is missing manifest.json: {tmp_path / 'manifest.json'}"


def test_folder_missing_payloads(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_bytes(dumps(MANIFEST))
    assert single_error(str(tmp_path)) == f"job folder is missing payloads/: {tmp_path / 'payloads'}"
    (tmp_path / "payloads").write_bytes(b"not a folder")
    assert single_error(str(tmp_path)) == f"job folder is missing payloads/: {tmp_path / 'payloads'}"


def test_folder_with_invalid_manifest_raises_every_error(tmp_path: Path) -> None:
    make_folder(tmp_path, {"manifest_version": "1.0", "graph_id": "g", "nodes": [{"node_id": "a"}]})
    with pytest.raises(ManifestError) as info:
        load_bundle(str(tmp_path))
    assert info.value.errors == [
        "unsupported agent_type nil for node a",
        "manifest must define at least one entrypoint or one node with role root/root_coordinator",
    ]


@pytest.mark.parametrize(("content", "shown"), [(b"[1, 2]", "[1,2]"), (b"null", "nil"), (b'"x"', '"x"')])
def test_folder_manifest_that_is_not_an_object(tmp_path: Path, content: bytes, shown: str) -> None:
    make_folder(tmp_path, content)
    assert single_error(str(tmp_path)) == f"{tmp_path / 'manifest.json'} must contain a JSON object, got {shown}"


def test_json_text_that_is_not_an_object() -> None:
    assert single_error("[1]") == "manifest JSON must contain a JSON object, got [1]"


# -- JSON errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "prefix"),
    [
        ("", "unexpected byte at position 0: "),
        ('{"a": 1,}', "unexpected byte at position 7: trailing comma"),
        ('{"é": x}', "unexpected byte at position 7: "),  # é is two bytes
        ('{"a":\n  x}', "unexpected byte at position 8: "),
        ('{"a": 1} tail', "unexpected byte at position 9: "),
        ("[1, 2", "unexpected byte at position 5: "),
        ("\ufeff{,}", "unexpected byte at position 4: "),  # the byte order mark is three bytes
        ('{"a": "\ud800"}', "unexpected byte at position 7: invalid UTF-8"),
    ],
)
def test_json_error_positions(text: str, prefix: str) -> None:
    assert single_error(text).startswith(prefix)


def test_json_error_detail_names_line_and_column() -> None:
    assert single_error('{"a":\n  x}') == (
        "unexpected byte at position 8: unexpected character, expected a JSON value (line 2, column 3)"
    )


def test_json_error_in_folder_manifest_counts_bytes(tmp_path: Path) -> None:
    make_folder(tmp_path, '{"é": x}'.encode())
    assert single_error(str(tmp_path)).startswith("unexpected byte at position 7: ")
    make_folder(tmp_path, b'{"a": "\xff"}')
    assert single_error(str(tmp_path)) == "unexpected byte at position 7: invalid UTF-8 (invalid start byte)"


def test_byte_order_mark_is_ignored(tmp_path: Path) -> None:
    make_folder(tmp_path, b"\xef\xbb\xbf" + dumps(MANIFEST))
    assert load_bundle(str(tmp_path)).manifest == load_manifest(MANIFEST)
    assert parse_manifest_json("\ufeff[1]") == [1]


# -- fingerprint -------------------------------------------------------------------------------


def reference_fingerprint(root: Path) -> str:
    digest = hashlib.sha256(b"manifest.json" + (root / "manifest.json").read_bytes())
    payloads = root / "payloads"
    files = sorted(p.relative_to(payloads).as_posix() for p in payloads.rglob("*") if p.is_file())
    for rel in files:
        digest.update(rel.encode() + (payloads / rel).read_bytes())
    return digest.hexdigest()


FILES = {"run.py": b"print(1)\n", "data/in.txt": b"hello", "data/deep/z.bin": b"\x00\x01", "a.txt": b""}


def test_fingerprint_follows_the_spec_algorithm(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "b", files=FILES)
    result = fingerprint(root)
    assert result == reference_fingerprint(root)
    assert len(result) == 64
    assert result == result.lower()
    assert fingerprint(str(root)) == result


def test_fingerprint_is_stable_across_folders(tmp_path: Path) -> None:
    one = make_folder(tmp_path / "one", files=FILES)
    two = make_folder(tmp_path / "two", files=dict(reversed(FILES.items())))
    assert fingerprint(one) == fingerprint(two)


def test_fingerprint_only_hashes_manifest_without_payload_files(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "b")
    expected = hashlib.sha256(b"manifest.json" + (root / "manifest.json").read_bytes()).hexdigest()
    assert fingerprint(root) == expected
    (root / "payloads" / "empty_dir").mkdir()
    assert fingerprint(root) == expected
    os.rmdir(root / "payloads" / "empty_dir")
    os.rmdir(root / "payloads")
    assert fingerprint(root) == expected


@pytest.mark.parametrize(
    "change",
    [
        lambda root: (root / "manifest.json").write_bytes(dumps({**MANIFEST, "job_name": "x"})),
        lambda root: (root / "payloads" / "run.py").write_bytes(b"print(2)\n"),
        lambda root: (root / "payloads" / "new.txt").write_bytes(b""),
        lambda root: (root / "payloads" / "run.py").rename(root / "payloads" / "main.py"),
        lambda root: (root / "payloads" / "data" / "in.txt").rename(root / "payloads" / "data" / "deep" / "in.txt"),
        lambda root: (root / "payloads" / "a.txt").unlink(),
    ],
    ids=["manifest", "content", "added", "renamed", "moved-between-folders", "removed"],
)
def test_fingerprint_changes_with_the_bundle(tmp_path: Path, change: Any) -> None:
    root = make_folder(tmp_path / "b", files=FILES)
    before = fingerprint(root)
    change(root)
    assert fingerprint(root) != before


def test_fingerprint_ignores_symlinks(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "b", files=FILES)
    before = fingerprint(root)
    (root / "payloads" / "link.py").symlink_to(root / "payloads" / "run.py")
    (root / "payloads" / "linkdir").symlink_to(root / "payloads" / "data")
    assert fingerprint(root) == before


def test_fingerprint_missing_manifest(tmp_path: Path) -> None:
    (tmp_path / "payloads").mkdir()
    with pytest.raises(ManifestError) as info:
        fingerprint(tmp_path)
    assert str(info.value) == "missing_manifest"
    assert info.value.errors == ["missing_manifest"]


# -- write_bundle ------------------------------------------------------------------------------


def test_write_bundle_round_trips(tmp_path: Path) -> None:
    dest = tmp_path / "bundles" / "job-1"
    bundle = write_bundle(dest, MANIFEST, {"run.py": b"print(1)\n", "data/note.txt": "héllo", "x\\y.txt": b"1"})
    assert isinstance(bundle, Bundle)
    assert bundle.root_path == str(dest)
    assert bundle.manifest_path == str(dest / "manifest.json")
    assert bundle.payloads_path == str(dest / "payloads")
    assert bundle.manifest == load_manifest(MANIFEST)
    assert loads((dest / "manifest.json").read_bytes()) == MANIFEST
    assert (dest / "payloads" / "run.py").read_bytes() == b"print(1)\n"
    assert (dest / "payloads" / "data" / "note.txt").read_text("utf-8") == "héllo"
    assert (dest / "payloads" / "x" / "y.txt").read_bytes() == b"1"
    assert load_bundle(str(dest)).manifest == bundle.manifest
    assert sorted(os.listdir(dest.parent)) == ["job-1"]  # no temporary folder left behind


def test_write_bundle_without_payloads_and_into_empty_folder(tmp_path: Path) -> None:
    dest = tmp_path / "job"
    dest.mkdir()
    bundle = write_bundle(str(dest), load_manifest(MANIFEST), durable=False)
    assert os.listdir(dest / "payloads") == []
    assert load_bundle(dest).manifest == bundle.manifest


@pytest.mark.parametrize(
    "key",
    ["../escape.txt", "/etc/passwd", "a/../../x", "a/../b", "..", "..\\x", "C:/x", "C:x", "", ".", "./", "a\x00b"],
)
def test_write_bundle_rejects_escaping_paths_and_writes_nothing(tmp_path: Path, key: str) -> None:
    dest = tmp_path / "store" / "job"
    with pytest.raises(ValidationError) as info:
        write_bundle(dest, MANIFEST, {"ok.txt": b"fine", key: b"bad"})
    assert str(info.value) == f"payload path must be relative and stay inside payloads/: {key}"
    assert not isinstance(info.value, ManifestError)
    assert not (tmp_path / "store").exists()
    assert not (tmp_path / "escape.txt").exists()


def test_write_bundle_rejects_non_string_key(tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as info:
        write_bundle(tmp_path / "job", MANIFEST, {5: b"x"})  # type: ignore[dict-item]
    assert str(info.value) == "payload path must be relative and stay inside payloads/: 5"


@pytest.mark.parametrize("keys", [("a", "a/b"), ("a/b", "a"), ("a/b", "a//b"), ("x/y", "./x/y")])
def test_write_bundle_rejects_clashing_paths(tmp_path: Path, keys: tuple[str, str]) -> None:
    with pytest.raises(ValidationError, match="clashes with another payload path"):
        write_bundle(tmp_path / "job", MANIFEST, dict.fromkeys(keys, b"x"))
    assert os.listdir(tmp_path) == []


def test_write_bundle_rejects_bad_payload_value(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match=r"payload a\.txt must be bytes or text, got int"):
        write_bundle(tmp_path / "job", MANIFEST, {"a.txt": 5})  # type: ignore[dict-item]
    assert os.listdir(tmp_path) == []


def test_write_bundle_validates_manifest_first(tmp_path: Path) -> None:
    with pytest.raises(ManifestError) as info:
        write_bundle(tmp_path / "job", {"nodes": []}, {"a.txt": b"x"})
    assert "manifest_version is required" in info.value.errors
    assert os.listdir(tmp_path) == []


def test_write_bundle_refuses_non_empty_destination(tmp_path: Path) -> None:
    dest = tmp_path / "job"
    dest.mkdir()
    (dest / "keep.txt").write_bytes(b"mine")
    with pytest.raises(ValidationError, match="not an empty folder"):
        write_bundle(dest, MANIFEST)
    assert os.listdir(dest) == ["keep.txt"]
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(ValidationError, match="not an empty folder"):
        write_bundle(tmp_path / "file", MANIFEST)


def test_written_bundle_fingerprint_matches_reference(tmp_path: Path) -> None:
    bundle = write_bundle(tmp_path / "job", MANIFEST, FILES)
    assert bundle.root_path is not None
    assert fingerprint(bundle.root_path) == reference_fingerprint(Path(bundle.root_path))
