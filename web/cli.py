"""The ``refund-desk`` command. Each area contributes its own subcommand."""

from __future__ import annotations

import click


@click.group()
def main() -> None:
    """Refund Desk: issue and track refunds on Antom payments."""


# Subcommands are added below, one line per area (e.g. ``main.add_command(sim)``).
