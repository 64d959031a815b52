"""Click group that answers unknown commands with a "Did you mean ...?" hint (exit 2)."""

from __future__ import annotations

import difflib
from typing import Any

import click


class SuggestingGroup(click.Group):
    def resolve_command(self, ctx: click.Context, args: list[str]) -> Any:
        name = args[0] if args else None
        if name and not name.startswith("-") and self.get_command(ctx, name) is None:
            matches = difflib.get_close_matches(name, self.list_commands(ctx), n=1, cutoff=0.5)
            hint = f" Did you mean {matches[0]!r}?" if matches else ""
            ctx.fail(f"No such command {name!r}.{hint}")
        return super().resolve_command(ctx, args)
