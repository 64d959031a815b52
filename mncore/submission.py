"""Submission bodies of the wire APIs (api.md §3.1): turn one into ``Runtime.submit`` arguments.

Three forms are accepted:

- an object without ``manifest_json`` and ``_bundle_path``: the manifest itself (no payloads);
- ``{"manifest_json": "<JSON text>", "payloads": {"rel/path": "<text>" | {"base64": "..."}}, "force": false}``;
- ``{"_bundle_path": "<path returned by the bundle upload>"}``.

A top-level ``version`` key is tolerated in the wrapper forms. Errors carry the spec's messages.
"""

from __future__ import annotations

import base64
import binascii
import os
from typing import Any

from .bundle import parse_manifest_json
from .errors import ManifestError, ValidationError
from .uploads import resolve_uploaded

__all__ = ["EMPTY", "INVALID_JSON", "parse_submission"]

INVALID_JSON = "Invalid or missing JSON payload"
EMPTY = "Empty JSON payload"
MALFORMED = "manifest_json is malformed"
NOT_OBJECT = "manifest_json must be an object"


def parse_submission(body: Any, uploads_root: str | os.PathLike[str]) -> tuple[Any, dict[str, bytes]]:
    """``(source, payloads)`` for :meth:`~mncore.runtime.Runtime.submit`; raises ValidationError."""
    if not isinstance(body, dict):
        raise ValidationError(INVALID_JSON)
    if not body:
        raise ValidationError(EMPTY)
    if "_bundle_path" in body:
        return resolve_uploaded(body["_bundle_path"], uploads_root), {}
    if "manifest_json" in body:
        return _manifest(body["manifest_json"]), _payloads(body.get("payloads"))
    return body, {}


def _manifest(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    if not isinstance(value, str):
        raise ValidationError(MALFORMED)
    try:
        manifest = parse_manifest_json(value)
    except ManifestError:
        raise ValidationError(MALFORMED) from None
    if not isinstance(manifest, dict):
        raise ValidationError(NOT_OBJECT)
    return manifest


def _payloads(value: Any) -> dict[str, bytes]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValidationError('payloads must be an object mapping relative paths to text or {"base64": "..."}')
    out: dict[str, bytes] = {}
    for key, item in value.items():
        if isinstance(item, str) and _is_utf8(item):
            out[key] = item.encode("utf-8")
        elif isinstance(item, dict) and set(item) == {"base64"} and isinstance(item["base64"], str):
            out[key] = _b64(key, item["base64"])
        else:
            raise ValidationError(f'payload {key} must be UTF-8 text or {{"base64": "..."}}')
    return out


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _b64(key: str, text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValidationError(f"payload {key}: base64 value is not valid base64") from None
