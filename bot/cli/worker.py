"""`ticketbot worker`: run the arq timer worker (needs REDIS_URL); see bot/worker.py."""

from __future__ import annotations

import argparse
import sys

from bot.settings import Settings


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("worker", help="run the arq timer worker (needs REDIS_URL)")
    parser.add_argument("--burst", action="store_true", help="stop when the queue is empty (tests, cron)")
    parser.set_defaults(func=cmd_worker)


def cmd_worker(args: argparse.Namespace) -> int:
    settings = Settings()
    if not settings.redis_url:
        print("REDIS_URL is not set: the arq worker needs Redis. Without it, `ticketbot serve` fires timers "
              "in-process.", file=sys.stderr)
        return 2
    from bot.worker import main

    print(f"ticketbot worker: timers from {settings.resolved_database_url().split('@')[-1]}, "
          f"alarms on {settings.redis_url.split('@')[-1]}", flush=True)
    return main(settings, burst=args.burst)
