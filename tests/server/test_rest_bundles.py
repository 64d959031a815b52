"""Bundle upload (zip safety), submitting uploads, the bundle registry and reload, over REST."""

from __future__ import annotations

import io
import json
import shutil
import stat
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest
from mn_server_testlib import ClientFactory, TestClient, bundle_zip, quick_job, runtime_of

API = "/api/v1"


def upload(client: TestClient, data: bytes, name: str = "bundle.zip") -> Any:
    return client.post(f"{API}/bundles/upload", files={"bundle": (name, data, "application/zip")})


def test_upload_then_submit(client: TestClient, tmp_path: Path) -> None:
    response = upload(client, bundle_zip(quick_job("uploaded")))
    assert response.status_code == 200
    body = response.json()
    assert body["manifest"]["graph_id"] == "uploaded"
    path = Path(body["bundle_path"])
    assert path.parent == tmp_path / "data" / "uploads"
    assert len(path.name) == 32 and all(c in "0123456789abcdef" for c in path.name)
    assert (path / "payloads" / "hello.txt").read_text() == "hi"
    created = client.post(f"{API}/jobs", json={"_bundle_path": str(path)})
    assert created.status_code == 201
    job_id = created.json()["id"]
    deadline = time.monotonic() + 10
    while (job := client.get(f"{API}/jobs/{job_id}").json()["job"])["status"] != "completed":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert job["manifest_ref"]["job_path"] == str(path)


def test_upload_with_top_folder(client: TestClient) -> None:
    body = upload(client, bundle_zip(top="my-bundle")).json()
    assert Path(body["bundle_path"]).name == "my-bundle"
    assert (Path(body["bundle_path"]) / "manifest.json").is_file()


def _zip_with(name: str, data: bytes = b"x", mode: int | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("manifest.json", json.dumps(quick_job()))
        archive.writestr("payloads/ok.txt", "ok")
        info = zipfile.ZipInfo(name)
        if mode is not None:
            info.external_attr = mode << 16
        archive.writestr(info, data)
    return buf.getvalue()


@pytest.mark.parametrize(
    "data",
    [
        _zip_with("../escape.txt"),
        _zip_with("payloads/../../escape.txt"),
        _zip_with("/etc/evil"),
        _zip_with("payloads/link", b"/etc/passwd", stat.S_IFLNK | 0o777),
        _zip_with("payloads/fifo", b"", stat.S_IFIFO | 0o644),
        _zip_with("C:/windows.txt"),
        _zip_with("payloads\\back.txt"),
    ],
)
def test_upload_rejects_unsafe_paths(client: TestClient, data: bytes, tmp_path: Path) -> None:
    response = upload(client, data)
    assert (response.status_code, response.json()) == (400, {"error": "bundle contains unsafe paths"})
    assert not (tmp_path / "escape.txt").exists()
    uploads = tmp_path / "data" / "uploads"
    assert not uploads.exists() or not list(uploads.iterdir())


def test_upload_errors(client: TestClient, tmp_path: Path) -> None:
    def error(response: Any) -> Any:
        assert response.status_code == 400
        return response.json()["error"]

    assert error(client.post(f"{API}/bundles/upload")) == "Missing 'bundle' file upload"
    assert error(client.post(f"{API}/bundles/upload", data={"bundle": "text"})) == "Missing 'bundle' file upload"
    assert error(upload(client, bundle_zip(), name="bundle.tar")) == "bundle must be a .zip file"
    assert error(upload(client, b"not a zip")) == "invalid zip bundle"
    missing = "bundle zip must contain manifest.json and payloads/"
    assert error(upload(client, bundle_zip(payloads=False))) == missing
    two_tops = bundle_zip(top="a", extra={"b/manifest.json": "{}"})
    assert error(upload(client, two_tops)) == missing
    invalid = upload(client, bundle_zip({"graph_id": "g"}))
    assert invalid.status_code == 400 and invalid.json()["errors"]
    uploads = tmp_path / "data" / "uploads"
    assert not uploads.exists() or not list(uploads.iterdir())  # nothing left behind


def test_uploaded_bundle_path_must_stay_in_uploads(client: TestClient, tmp_path: Path) -> None:
    body = upload(client, bundle_zip()).json()
    path = Path(body["bundle_path"])
    outside = tmp_path / "outside"
    shutil.copytree(path, outside)
    for candidate in (str(outside), str(path.parent), str(path) + "/../../..", "relative/path", ""):
        response = client.post(f"{API}/jobs", json={"_bundle_path": candidate})
        assert response.json() == {"error": "unknown uploaded bundle"}, candidate
    (path / "manifest.json").unlink()
    response = client.post(f"{API}/jobs", json={"_bundle_path": str(path)})
    assert (response.status_code, response.json()) == (400, {"error": "invalid uploaded bundle"})
    escape = path / "payloads" / "up"
    escape.symlink_to(outside)  # a link out of the uploads root resolves outside it
    assert client.post(f"{API}/jobs", json={"_bundle_path": str(escape)}).json() == {"error": "unknown uploaded bundle"}


def _write_bundle(root: Path, name: str, graph_id: str, reload: dict[str, Any] | None = None) -> Path:
    folder = root / name
    (folder / "payloads").mkdir(parents=True)
    manifest = quick_job(graph_id)
    if reload:
        manifest["reload"] = reload
    (folder / "manifest.json").write_text(json.dumps(manifest))
    (folder / "payloads" / "a.txt").write_text("one")
    return folder


@pytest.fixture
def registry_client(client_factory: ClientFactory, tmp_path: Path) -> TestClient:
    root = tmp_path / "bundles"
    _write_bundle(root, "alpha", "alpha")
    _write_bundle(root, "beta", "beta", {"mode": "interval", "interval_seconds": 1})
    _write_bundle(root, "zeta-dup", "alpha")  # same id as alpha: the first one seen wins
    (root / "broken").mkdir()
    (root / "broken" / "manifest.json").write_text("{")
    (root / "notes").mkdir()
    client = client_factory(bundles_dir=str(root))
    assert client.portal.call(runtime_of(client).bundles.scan) == ["alpha", "beta"]  # type: ignore[union-attr]
    return client


def test_bundle_list(registry_client: TestClient, tmp_path: Path) -> None:
    data = registry_client.get(f"{API}/bundles").json()["data"]
    assert [b["bundle_id"] for b in data] == ["alpha", "beta"]
    alpha = data[0]
    assert set(alpha) == {"bundle_id", "path", "fingerprint", "last_reloaded", "reload_mode"}
    assert alpha["path"] == str(tmp_path / "bundles" / "alpha")
    assert len(alpha["fingerprint"]) == 64 and alpha["reload_mode"] == "manual"
    assert data[1]["reload_mode"] == "interval"


def test_bundle_reload_shapes(registry_client: TestClient, tmp_path: Path) -> None:
    url = f"{API}/bundles/alpha/reload"
    assert registry_client.post(url).json() == {
        "bundle_id": "alpha",
        "changed": False,
        "reloaded": False,
        "message": "No bundle changes detected",
    }
    before = registry_client.get(f"{API}/bundles").json()["data"][0]["fingerprint"]
    (tmp_path / "bundles" / "alpha" / "payloads" / "a.txt").write_text("two")
    changed = registry_client.post(url).json()
    assert set(changed) == {
        "bundle_id",
        "changed",
        "reloaded",
        "previous_fingerprint",
        "current_fingerprint",
        "reason",
        "message",
        "timestamp",
    }
    assert changed["changed"] is True and changed["reloaded"] is True and changed["reason"] == "api_request"
    assert changed["previous_fingerprint"] == before != changed["current_fingerprint"]
    assert changed["message"] == "Bundle reloaded successfully"


def test_bundle_reload_errors(registry_client: TestClient, tmp_path: Path) -> None:
    missing = registry_client.post(f"{API}/bundles/nope/reload")
    assert (missing.status_code, missing.json()) == (404, {"error": "Bundle nope not found"})
    manifest = tmp_path / "bundles" / "alpha" / "manifest.json"
    manifest.write_text(json.dumps({"graph_id": "alpha", "nodes": []}))
    invalid = registry_client.post(f"{API}/bundles/alpha/reload")
    assert invalid.status_code == 422
    assert invalid.json()["error"].startswith("Manifest validation failed: ")
    assert "nodes must not be empty" in invalid.json()["error"]
    manifest.unlink()
    gone = registry_client.post(f"{API}/bundles/alpha/reload")
    assert (gone.status_code, gone.json()) == (500, {"error": "Fingerprint failed: missing_manifest"})


def test_interval_scan_reloads_due_bundles(registry_client: TestClient, tmp_path: Path) -> None:
    registry = runtime_of(registry_client).bundles
    (tmp_path / "bundles" / "beta" / "payloads" / "a.txt").write_text("changed")
    time.sleep(1.05)
    results = registry_client.portal.call(registry.reload_due)  # type: ignore[union-attr]
    assert [(r["bundle_id"], r["reason"]) for r in results] == [("beta", "interval_scan")]
    assert registry_client.portal.call(registry.reload_due) == []  # type: ignore[union-attr]
