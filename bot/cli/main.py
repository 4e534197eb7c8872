"""`ticketbot` command line. Subcommands and their JSON output are a contract (CONTRACTS.md)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from bot.settings import Settings


def _settings() -> Settings:
    return Settings()


def cmd_serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from bot.web.app import build_app

    settings = _settings()
    app = build_app(settings, host=args.host)
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


def cmd_audit_verify(_args: argparse.Namespace) -> int:
    from storage.audit_verify import verify_audit
    from storage.database import create_engine, session_factory

    settings = _settings()

    async def run() -> tuple[int, list]:
        engine = create_engine(settings.resolved_database_url())
        try:
            return await verify_audit(session_factory(engine))
        finally:
            await engine.dispose()

    count, problems = asyncio.run(run())
    if problems:
        for problem in problems:
            print(f"#{problem.seq}: {problem.reason}")
        print(f"audit chain BROKEN: {len(problems)} problem(s) in {count} events")
        return 1
    print(f"audit chain OK: {count} events")
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

    audit = sub.add_parser("audit", help="audit trail tools")
    audit_sub = audit.add_subparsers(dest="audit_command", metavar="ACTION")
    verify = audit_sub.add_parser("verify", help="check the audit hash chain; exit 1 when tampered")
    verify.set_defaults(func=cmd_audit_verify)

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
    return int(func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
