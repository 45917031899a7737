"""The ``refund-desk`` command. Each area contributes its own subcommand."""

from __future__ import annotations

import click

from web.demo import demo
from web.jobs import poller_command
from web.manage import (
    api_keys,
    limits_group,
    migrate_command,
    reasons_group,
    serve,
    settlement_group,
    users,
)
from web.sim.cli import sim


@click.group()
def main() -> None:
    """Refund Desk: issue and track refunds on Antom payments."""


# Subcommands are added below, one line per area (e.g. ``main.add_command(sim)``).
main.add_command(users)  # app-foundation: users, migrate and serve below
main.add_command(limits_group)  # admin pages: limits per role and per user
main.add_command(reasons_group)  # admin pages: the managed reason list
main.add_command(api_keys)  # order feed: keys for the merchant's systems
main.add_command(settlement_group)  # settlement: Antom settlement reports, reversals
main.add_command(migrate_command)
main.add_command(serve)
main.add_command(sim)  # simulator engineer: the Antom simulator
main.add_command(poller_command)  # status engineer: the inquiry poller worker
main.add_command(demo)  # lead: the demo on SQLite with the simulator and seeded data


if __name__ == "__main__":
    main()
