"""CLI output: one ``mn.cli/v1`` JSON envelope with ``--json``, rich (or plain) text otherwise."""

from __future__ import annotations

import os
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

from .._util import dumps_str
from ..errors import AuthError, NotFoundError, ValidationError

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_USAGE", "CliError", "Output", "error_code"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
SCHEMA = "mn.cli/v1"
STREAM_SCHEMA = "mn.cli.stream/v1"


class CliError(Exception):
    """A command failed in a way the user should see: carries the JSON error code and a hint."""

    def __init__(
        self,
        message: str,
        *,
        code: str = "MN_COMMAND_FAILED",
        hint: str | None = None,
        details: Any = None,
        exit_code: int = EXIT_FAILED,
    ) -> None:
        super().__init__(message)
        self.message, self.code, self.hint, self.details, self.exit_code = message, code, hint, details, exit_code


def error_code(exc: BaseException) -> str:
    if isinstance(exc, ValidationError):
        return "MN_VALIDATION_FAILED"
    if isinstance(exc, NotFoundError):
        return "MN_NOT_FOUND"
    if isinstance(exc, AuthError):
        return "MN_PERMISSION_DENIED"
    return "MN_COMMAND_FAILED"


class Output:
    """Writes results for humans or machines; never mixes the two on stdout."""

    def __init__(self, as_json: bool) -> None:
        self.json = as_json
        plain = os.environ.get("MN_CLI_OUTPUT") == "plain" or "NO_COLOR" in os.environ
        self.console = Console(no_color=plain, highlight=not plain, soft_wrap=True)
        self.err = Console(stderr=True, no_color=plain, highlight=False)
        self.plain = plain

    def data(self, data: Any, human: Any = None) -> None:
        """Print a success: the envelope with ``--json``, else ``human`` (text, renderable, or callable)."""
        if self.json:
            sys.stdout.write(dumps_str({"schema": SCHEMA, "ok": True, "data": data}) + "\n")
            return
        if callable(human):
            human()
        elif human is not None:
            self.console.print(human)
        else:
            self.pretty(data)

    def pretty(self, data: Any) -> None:
        text = dumps_str(data, indent=True)
        if self.plain:
            sys.stdout.write(text + "\n")
        else:
            self.console.print_json(text)

    def stream(self, kind: str, **fields: Any) -> None:
        sys.stdout.write(dumps_str({"schema": STREAM_SCHEMA, "type": kind, **fields}) + "\n")
        sys.stdout.flush()

    def fail(self, exc: CliError) -> int:
        if self.json:
            error = {"code": exc.code, "message": exc.message, "hint": exc.hint, "details": exc.details}
            sys.stdout.write(dumps_str({"schema": SCHEMA, "ok": False, "error": error}) + "\n")
        else:
            self.err.print(f"[bold red]Error:[/] {exc.message}", markup=True)
            if isinstance(exc.details, list):
                for item in exc.details:
                    self.err.print(f"  - {item}", markup=False)
            if exc.hint:
                self.err.print(f"[dim]Hint: {exc.hint}[/]")
        return exc.exit_code

    def table(self, title: str | None, columns: list[str], rows: list[list[Any]]) -> Table:
        table = Table(title=title, show_lines=False)
        for col in columns:
            table.add_column(col, overflow="fold")
        for row in rows:
            table.add_row(*("" if v is None else str(v) for v in row))
        return table
