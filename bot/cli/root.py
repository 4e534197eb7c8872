"""`ticketbot` command line. Subcommands and their JSON output are a contract (CONTRACTS.md)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from bot.settings import Settings

if TYPE_CHECKING:
    from core.audit.chain import AuditKey


def _settings() -> Settings:
    return Settings()


def cmd_serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from bot.web.app import build_app

    settings = _settings()
    app = build_app(settings, host=args.host, port=args.port)
    playground = settings.playground_enabled(args.host)
    print(f"ticketbot serving on http://{args.host}:{args.port}"
          + (f"  (playground: http://{args.host}:{args.port}/playground)" if playground else ""), flush=True)
    web.run_app(app, host=args.host, port=args.port, print=None, access_log=None)
    return 0


def cmd_db_upgrade(_args: argparse.Namespace) -> int:
    from storage.migrate import upgrade

    settings = _settings()
    upgrade(settings.resolved_database_url())
    print("database is at the newest schema")
    return 0


def cmd_demo(_args: argparse.Namespace) -> int:
    from bot.demo import load_demo
    from core.clock import SystemClock
    from storage.database import create_engine, session_factory
    from storage.migrate import upgrade

    settings = _settings()
    url = settings.resolved_database_url()
    upgrade(url)

    async def run() -> int:
        engine = create_engine(url)
        try:
            return await load_demo(session_factory(engine), SystemClock().now())
        finally:
            await engine.dispose()

    added = asyncio.run(run())
    print(f"demo data loaded: {added} people added")
    return 0


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ticketbot",
        description="Chat-first work-order service for WeCom, DingTalk and Feishu (工单机器人).",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the web service (callbacks, API, playground)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8080, help="port to bind (default 8080)")
    serve.set_defaults(func=cmd_serve)

    db = sub.add_parser("db", help="database maintenance")
    db_sub = db.add_subparsers(dest="db_command", metavar="ACTION")
    db_up = db_sub.add_parser("upgrade", help="migrate the database to the newest schema")
    db_up.set_defaults(func=cmd_db_upgrade)

    demo = sub.add_parser("demo", help="load the demo directory (stores, technicians, supervisor, admin)")
    demo.set_defaults(func=cmd_demo)

    from bot.cli import subcommands as cli_extra

    for register in cli_extra.registrars(argv):
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.verbose:
        logging.getLogger("alembic").setLevel(logging.WARNING)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    from storage.audit_keys import audit_key_provider

    # Commands that build their own engine append to the audit chain with the deployment's key,
    # loaded (and on a first start generated) only if one of them does.
    with audit_key_provider(_audit_key):
        return int(func(args) or 0)


def _audit_key() -> AuditKey:
    from bot.audit_key import load_audit_key

    return load_audit_key(_settings())


if __name__ == "__main__":
    sys.exit(main())
