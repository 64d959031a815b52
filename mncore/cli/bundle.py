"""``mn bundle validate|list|reload``: bundle folders and the bundle registry (operations.md §8).

The registry lives in the server; the gRPC API has no call for it, so ``list`` and ``reload`` use
the REST API when ``MN_API_BASE_URL`` is set. Without it, ``list`` scans ``MN_BUNDLES_DIR`` here.
"""

from __future__ import annotations

from urllib.parse import quote

import click

from .. import _loop
from ..bundles import BundleRegistry
from ._common import command, json_option, settings
from ._group import SuggestingGroup
from ._output import EXIT_USAGE, CliError, Output
from ._rest import RestClient
from .run import validate

__all__ = ["bundle"]


@click.group("bundle", cls=SuggestingGroup)
def bundle() -> None:
    """Validate bundles; list and reload the server's bundle registry."""


bundle.add_command(validate)


def _rest() -> RestClient | None:
    cfg = settings()
    return RestClient(cfg.api_base_url, cfg.api_token) if cfg.api_base_url else None


@bundle.command("list")
@json_option
@command
def list_(out: Output) -> int:
    """Registered bundles: id, path, fingerprint, last reload, reload mode."""
    rest = _rest()
    if rest is not None:
        items = rest.call("GET", "/bundles")["data"]
    else:
        registry = BundleRegistry(settings())
        _loop.run(registry.scan())
        items = registry.list_bundles()
    rows = [
        [b["bundle_id"], b["path"], str(b["fingerprint"])[:16], b["last_reloaded"], b["reload_mode"]] for b in items
    ]
    out.data(items, out.table(None, ["Bundle ID", "Path", "Fingerprint", "Last Reloaded", "Reload"], rows))
    return 0


@bundle.command("reload")
@click.argument("bundle_id")
@json_option
@command
def reload(out: Output, bundle_id: str) -> int:
    """Ask the server to reload a registered bundle (needs MN_API_BASE_URL)."""
    rest = _rest()
    if rest is None:
        raise CliError(
            "bundle reload talks to the server's REST API: set MN_API_BASE_URL",
            code="MN_USAGE_ERROR",
            hint="e.g. MN_API_BASE_URL=http://127.0.0.1:4000",
            exit_code=EXIT_USAGE,
        )
    result = rest.call("POST", f"/bundles/{quote(bundle_id, safe='')}/reload")
    out.data(result, f"Bundle reload successful. {result.get('message', '')}")
    return 0
