"""Shared pieces of CLI commands: the ``--json`` flag, error rendering, settings, logging."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

import click

from ..config import Settings
from ..errors import ManifestError, MNError
from ._output import EXIT_INTERRUPTED, CliError, Output, error_code

json_option = click.option("--json", "as_json", is_flag=True, help="Print one mn.cli/v1 JSON envelope.")


def configure_logging(role: str = "cli", level: str | None = None) -> None:
    level = level or Settings.from_env().log_level or "WARNING"
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.WARNING),
        format=f"%(asctime)s %(levelname)s pid=%(process)d role={role} %(name)s: %(message)s",
    )


def settings() -> Settings:
    return Settings.from_env()


def command(fn: Callable[..., int | None]) -> Callable[..., int]:
    """Wrap a command body: builds ``Output``, maps errors to exit codes and JSON error envelopes."""

    @functools.wraps(fn)
    def wrapper(*args: Any, as_json: bool = False, **kwargs: Any) -> int:
        out = Output(as_json)
        try:
            return fn(out, *args, **kwargs) or 0
        except CliError as exc:
            return out.fail(exc)
        except ManifestError as exc:
            return out.fail(CliError(exc.message, code="MN_VALIDATION_FAILED", details=exc.errors))
        except MNError as exc:
            return out.fail(CliError(exc.message, code=error_code(exc)))
        except KeyboardInterrupt:
            out.err.print("interrupted")
            return EXIT_INTERRUPTED

    return wrapper
