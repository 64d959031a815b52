"""Bundle routes: zip upload, the registry listing, reload (api.md §3.3, §4; operations.md §8)."""

from __future__ import annotations

import asyncio

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response

from mncore.uploads import extract_upload

from ._http import JSON, runtime, settings
from .routing import Endpoint, Op, Param

__all__ = ["ENDPOINTS", "EXTRACTED_FACTOR"]

#: an upload may expand to this many times the upload size limit once extracted
EXTRACTED_FACTOR = 4


async def upload_bundle(request: Request) -> Response:
    cfg = settings(request)
    async with request.form(max_files=1, max_fields=16) as form:
        upload = form.get("bundle")
        file = upload.file if isinstance(upload, UploadFile) else None
        name = upload.filename if isinstance(upload, UploadFile) else None
        result = await asyncio.to_thread(
            extract_upload, file, name, cfg.uploads_dir, cfg.api_upload_size_limit_bytes * EXTRACTED_FACTOR
        )
    return JSON(result)


async def list_bundles(request: Request) -> Response:
    return JSON({"data": runtime(request).bundles.list_bundles()})


async def reload_bundle(request: Request) -> Response:
    return JSON(await runtime(request).bundles.reload(str(request.path_params["bundle_id"])))


ENDPOINTS = [
    Endpoint(
        "/bundles/upload",
        (
            Op(
                "POST",
                upload_bundle,
                "uploadBundle",
                "Upload a bundle zip (multipart field `bundle`)",
                {200: "BundleUpload"},
                body="multipart:BundleUploadForm",
            ),
        ),
    ),
    Endpoint("/bundles", (Op("GET", list_bundles, "listBundles", "Registered bundles", {200: "BundleList"}),)),
    Endpoint(
        "/bundles/{bundle_id}/reload",
        (
            Op(
                "POST",
                reload_bundle,
                "reloadBundle",
                "Reload a bundle when its fingerprint changed",
                {200: "BundleReload", 422: "Error", 500: "Error"},
                (Param("bundle_id", "path", {"type": "string"}, "Bundle id (the graph_id)"),),
            ),
        ),
    ),
]
