"""The `ticketbot` command line: one module per command family; the JSON outputs are contracts.

Top of bot: may import everything; nothing imports it. `main` is here because the installed
`ticketbot` script calls `bot.cli:main` (scripts made by earlier installs too).
"""

from bot.cli.root import main

__all__ = ["main"]
