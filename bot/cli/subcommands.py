"""Subcommands that belong to feature modules: each module has `register(subparsers)`.

Importing a feature module can be costly (the lifecycle, arq, openpyxl), so only the module
of the subcommand being run is imported; `--help` imports them all to list them.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable, Sequence

Registrar = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]
# subcommand name → module whose register() adds it
CLI_MODULES: dict[str, str] = {
    "dingtalk": "bot.cli.dingtalk",
    "sop": "bot.cli.sop",
    "sla": "bot.cli.sla",
    "worker": "bot.cli.worker",
    "classify": "bot.cli.classify",
    "import": "bot.cli.imports",
    "audit": "bot.cli.audit",
    "directory": "bot.cli.directory",  # issue 20: directory sync
    "customer": "bot.cli.customers",  # issue 20: customer forget
    "webhook": "bot.cli.webhooks",  # issue 23: outbound webhooks
    "api-client": "bot.cli.api_clients",  # issue 23: API v1 clients
    "mapping": "bot.cli.mappings",  # issue 23: field mappings per connected system
    "stores": "bot.cli.stores_qr",  # issue 21: store QR codes (微信客服 or the report page)
}


def registrars(argv: Sequence[str] | None = None) -> list[Registrar]:
    words = [w for w in (argv or []) if not w.startswith("-")]
    wanted = words[0] if words else None
    if wanted is not None and wanted not in CLI_MODULES:
        return []  # a built-in command (serve, db, demo)
    modules = [CLI_MODULES[wanted]] if wanted is not None else list(CLI_MODULES.values())
    return [importlib.import_module(name).register for name in modules]
