"""The bundle registry: known bundle folders, their fingerprints, and reloads (operations.md §8).

At start the registry holds every subdirectory of ``MN_BUNDLES_DIR`` that contains
``manifest.json``, plus folders given to :meth:`BundleRegistry.register_dir`. A bundle's id is its
``graph_id``; the first folder seen with an id wins (later duplicates are logged and skipped).

:meth:`BundleRegistry.reload` re-fingerprints a bundle and, when it changed and still validates,
swaps the in-memory record; jobs already running are untouched. Bundles whose reload mode is
``interval`` (manifest ``reload``, overridden by ``MN_BUNDLE_RELOAD_MODE`` /
``MN_BUNDLE_RELOAD_INTERVAL_SECONDS``) are reloaded by a scanner that ticks every 5 s, with reason
``interval_scan``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass
from typing import Any

from ._util import now_iso
from .bundle import Bundle, fingerprint, load_bundle
from .config import Settings
from .errors import BundleNotFound, BundleReloadInvalid, FingerprintFailed, ManifestError, MNError

logger = logging.getLogger(__name__)

__all__ = ["SCAN_TICK_S", "BundleRecord", "BundleRegistry"]

SCAN_TICK_S = 5.0
_DEFAULT_INTERVAL_S = 60.0


@dataclass
class BundleRecord:
    """One registered bundle folder and what was loaded from it."""

    bundle_id: str
    path: str
    fingerprint: str
    bundle: Bundle
    last_reloaded: str
    reload_mode: str
    interval_seconds: float
    checked_at: float

    def public(self) -> dict[str, Any]:
        """The ``GET /bundles`` item."""
        return {
            "bundle_id": self.bundle_id,
            "path": self.path,
            "fingerprint": self.fingerprint,
            "last_reloaded": self.last_reloaded,
            "reload_mode": self.reload_mode,
        }


def _load(path: str) -> tuple[Bundle, str]:
    bundle = load_bundle(path)
    return bundle, fingerprint(path)


class BundleRegistry:
    """Bundle id → :class:`BundleRecord`; async methods do the file work in a thread."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._records: dict[str, BundleRecord] = {}
        self._task: asyncio.Task[None] | None = None

    # -- registration ------------------------------------------------------------------------
    async def scan(self) -> list[str]:
        """Register every not-yet-known bundle folder under ``MN_BUNDLES_DIR``; the new ids."""
        root = self.settings.bundles_dir
        if not root:
            return []
        try:
            names = sorted(os.listdir(root))
        except OSError as exc:
            logger.warning("MN_BUNDLES_DIR %s cannot be read: %s", root, exc.strerror or exc)
            return []
        known = {record.path for record in self._records.values()}
        added = []
        for name in names:
            path = os.path.abspath(os.path.join(root, name))
            if path in known or not os.path.isfile(os.path.join(path, "manifest.json")):
                continue
            try:
                record = await self.register_dir(path)
            except MNError as exc:
                logger.warning("bundle folder %s skipped: %s", path, exc)
                continue
            if record.path == path:
                added.append(record.bundle_id)
        return added

    async def register_dir(self, path: str | os.PathLike[str]) -> BundleRecord:
        """Load and register one bundle folder; an id already registered keeps its first folder."""
        full = os.path.abspath(os.fspath(path))
        bundle, digest = await asyncio.to_thread(_load, full)
        bundle_id = str(bundle.manifest["graph_id"])
        existing = self._records.get(bundle_id)
        if existing is not None:
            if existing.path != full:
                logger.warning("bundle %s at %s ignored: already registered from %s", bundle_id, full, existing.path)
            return existing
        mode, interval = self._reload_policy(bundle)
        record = BundleRecord(bundle_id, full, digest, bundle, now_iso(), mode, interval, time.monotonic())
        self._records[bundle_id] = record
        return record

    def _reload_policy(self, bundle: Bundle) -> tuple[str, float]:
        reload = bundle.manifest.get("reload") or {}
        mode = self.settings.bundle_reload_mode or reload.get("mode") or "manual"
        interval = self.settings.bundle_reload_interval_seconds or reload.get("interval_seconds")
        try:
            seconds = float(interval) if interval is not None else _DEFAULT_INTERVAL_S
        except (TypeError, ValueError):
            seconds = _DEFAULT_INTERVAL_S
        return str(mode), max(seconds, 0.0)

    # -- reads -------------------------------------------------------------------------------
    def get(self, bundle_id: str) -> BundleRecord:
        record = self._records.get(bundle_id)
        if record is None:
            raise BundleNotFound(bundle_id)
        return record

    def list_bundles(self) -> list[dict[str, Any]]:
        return [self._records[key].public() for key in sorted(self._records)]

    # -- reload ------------------------------------------------------------------------------
    async def reload(self, bundle_id: str, reason: str = "api_request") -> dict[str, Any]:
        """Reload when the fingerprint changed; the spec's response shapes (api.md §3.3)."""
        record = self.get(bundle_id)
        record.checked_at = time.monotonic()
        try:
            digest = await asyncio.to_thread(fingerprint, record.path)
        except ManifestError as exc:
            raise FingerprintFailed(str(exc)) from exc
        if digest == record.fingerprint:
            return {
                "bundle_id": bundle_id,
                "changed": False,
                "reloaded": False,
                "message": "No bundle changes detected",
            }
        try:
            bundle = await asyncio.to_thread(load_bundle, record.path)
        except ManifestError as exc:
            raise BundleReloadInvalid(exc.errors) from exc
        previous = record.fingerprint
        record.bundle, record.fingerprint, record.last_reloaded = bundle, digest, now_iso()
        record.reload_mode, record.interval_seconds = self._reload_policy(bundle)
        logger.info("bundle %s reloaded (%s): %s -> %s", bundle_id, reason, previous[:12], digest[:12])
        return {
            "bundle_id": bundle_id,
            "changed": True,
            "reloaded": True,
            "previous_fingerprint": previous,
            "current_fingerprint": digest,
            "reason": reason,
            "message": "Bundle reloaded successfully",
            "timestamp": record.last_reloaded,
        }

    async def reload_due(self) -> list[dict[str, Any]]:
        """Reload every ``interval`` bundle whose interval has elapsed (reason ``interval_scan``)."""
        now = time.monotonic()
        results = []
        for record in list(self._records.values()):
            if record.reload_mode != "interval" or now - record.checked_at < record.interval_seconds:
                continue
            try:
                results.append(await self.reload(record.bundle_id, "interval_scan"))
            except MNError as exc:
                logger.warning("interval reload of bundle %s failed: %s", record.bundle_id, exc)
        return results

    # -- scanner -----------------------------------------------------------------------------
    def start(self, tick_s: float = SCAN_TICK_S) -> None:
        """Start the interval scanner on the running loop (idempotent)."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._scan_loop(tick_s), name="bundle-scanner")

    async def _scan_loop(self, tick_s: float) -> None:
        while True:
            await asyncio.sleep(tick_s)
            try:
                await self.reload_due()
            except Exception:  # the scanner must outlive one bad tick
                logger.exception("bundle scanner tick failed")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
