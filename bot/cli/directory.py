"""`ticketbot directory sync [--platform P] [--force]`: the address books of the configured platforms.

Each platform is fetched completely first, then applied in one transaction (core/masterdata/
directory.py); a platform whose fetch fails, or whose snapshot would deactivate too many people
(DIRECTORY_MAX_DEACTIVATE_SHARE; `--force` applies it anyway), changes nothing. Prints one JSON
object: {"ok", "platforms": [{"platform", "ok", "created", "updated", "deactivated", "unchanged",
"errors", "teams", "people", "tickets_released"}]}. Exit status 0 when every platform synced without
an error, 1 otherwise (also when no platform is configured).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from bot.settings import Settings

EXIT_FAILED = 1


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("directory", help="sync people and departments from the chat platforms")
    sub = parser.add_subparsers(dest="directory_command", metavar="WHAT")
    sync = sub.add_parser("sync", help="fetch each configured platform's address book and apply it → JSON report")
    sync.add_argument("--platform", choices=("wecom", "feishu", "dingtalk"), action="append",
                      help="only this platform (repeatable); default: every configured one")
    sync.add_argument("--force", action="store_true",
                      help="apply even when more than DIRECTORY_MAX_DEACTIVATE_SHARE would be deactivated")
    sync.set_defaults(func=cmd_directory_sync)
    parser.set_defaults(func=lambda _args: _usage(parser))


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return EXIT_FAILED


async def run_sync(settings: Settings, platforms: list[str] | None, *, force: bool) -> dict[str, Any]:
    from bot.audit_key import use_audit_key
    from bot.jobs.directory_job import check_settings, configured_platforms, sync_directories
    from bot.rules.rulebook import RuleBook
    from bot.service_config import service_config
    from bot.token_cache import MemoryTokenCache, RedisTokenCache
    from core.clock import SystemClock
    from core.ports import TokenCache
    from core.service import TicketService
    from storage.database import create_engine, session_factory
    from storage.migrate import upgrade
    from storage.unit_of_work import SqlUnitOfWork

    check_settings(settings)
    if not platforms and not configured_platforms(settings):
        return {"ok": False, "platforms": [],
                "error": "没有配置任何平台（企业微信、飞书、钉钉的凭据都未设置），无法同步通讯录"}
    url = settings.resolved_database_url()
    await asyncio.to_thread(upgrade, url)
    engine = create_engine(url)
    redis: Any = None
    tokens: TokenCache = MemoryTokenCache()
    if settings.redis_url:  # the running service's token: no second gettoken that would not be needed
        from redis.asyncio import Redis

        redis = Redis.from_url(settings.redis_url)
        tokens = RedisTokenCache(redis)
    try:
        use_audit_key(engine, settings)
        sessions = session_factory(engine)
        service = TicketService(lambda: SqlUnitOfWork(sessions, channels=settings.delivery_channels()),
                                SystemClock(), RuleBook(), service_config(settings))
        reports = await sync_directories(service, settings, tokens, platforms=platforms, force=force)
        return {"ok": all(r["ok"] for r in reports) and bool(reports), "platforms": reports}
    finally:
        if redis is not None:
            await redis.aclose()
        await engine.dispose()


def cmd_directory_sync(args: argparse.Namespace) -> int:
    from bot.jobs.directory_job import DirectorySettingsError

    try:
        body = asyncio.run(run_sync(Settings(), args.platform, force=args.force))
    except DirectorySettingsError as error:
        body = {"ok": False, "error": str(error), "platforms": []}
    json.dump(body, sys.stdout, ensure_ascii=False, indent=2)
    sys.stdout.write("\n")
    return 0 if body["ok"] else EXIT_FAILED
