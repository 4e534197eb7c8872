"""`python -m bot.cli …`: the same as the `ticketbot` command."""

import sys

from bot.cli.root import main

sys.exit(main())
