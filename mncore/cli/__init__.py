"""The ``mn`` command line: ``main(argv) -> int``; commands are thin calls into the library."""

from __future__ import annotations

import sys

import click

from .app import cli

__all__ = ["cli", "main"]


def main(argv: list[str] | None = None) -> int:
    try:
        result = cli.main(args=argv if argv is not None else sys.argv[1:], prog_name="mn", standalone_mode=False)
    except click.exceptions.UsageError as exc:
        exc.show()
        return 2
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except (click.exceptions.Abort, KeyboardInterrupt):
        sys.stderr.write("\ninterrupted\n")
        return 130
    except click.exceptions.ClickException as exc:
        exc.show()
        return exc.exit_code
    return int(result or 0)
