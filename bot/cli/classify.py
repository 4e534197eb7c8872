"""`ticketbot classify [TEXT ...]` (a CLI contract): one JSON object per message, one per line.

Messages come from the arguments (each argument is one message) or else from stdin (one per
line, UTF-8; undecodable bytes become U+FFFD). Every input line gets exactly one output line,
so output line N belongs to input line N: an empty or blank line prints an object with
`category` null and `intent` "empty".

Keys: `text`, `category` (null unless a routable fault), `intent` (fault, unknown_fault,
greeting, thanks, price, booking, invoice, status, smalltalk, empty), `keywords`, `negated`,
`score`, `runner_up` ({category, score} or null), `hints`, `rules_version`, `truncated`;
`--explain` adds `evidence`. The rules are the ones the service uses: the newest stored
version in the database at DATABASE_URL, else the shipped defaults (version 0; a note on
stderr says why). Exit status 0.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import logging
import sys
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

from bot.rules.rulebook import shipped_rules, stored_rules
from bot.settings import Settings
from nlp.rules import RuleSet


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "classify", help="classify messages (stdin lines or arguments) → one JSON object per line")
    parser.add_argument("texts", nargs="*", metavar="TEXT", help="messages to classify (default: read stdin)")
    parser.add_argument("--explain", action="store_true", help="include the matched evidence")
    parser.set_defaults(func=cmd_classify)


async def load_rules(settings: Settings) -> tuple[RuleSet, str | None]:
    """The service's rules, and why the defaults are used instead (None when they are not)."""
    from sqlalchemy.exc import SQLAlchemyError

    from storage.database import create_engine, session_factory, sqlite_path
    from storage.unit_of_work import SqlUnitOfWork

    url = settings.resolved_database_url()
    path = sqlite_path(url)
    if path is not None and not path.exists():
        return shipped_rules(), None  # no database yet: nothing was ever stored (and none is created)
    engine = create_engine(url)
    try:
        async with SqlUnitOfWork(session_factory(engine)) as uow:
            return await stored_rules(uow), None
    except (SQLAlchemyError, OSError) as error:
        return shipped_rules(), f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
    finally:
        await engine.dispose()


def lines_of(stream: TextIO) -> Iterator[str]:
    for line in stream:
        yield line.rstrip("\r\n")


def classify_lines(rules: RuleSet, texts: Iterable[str], out: TextIO, *, explain: bool = False,
                   flush: bool = False) -> int:
    from nlp.classifier import FaultClassifier

    classifier = FaultClassifier(rules).warm()
    count = 0
    for text in texts:
        result: dict[str, Any] = classifier.classify(text).to_json_dict()
        if not explain:
            result.pop("evidence", None)
        out.write(json.dumps(result, ensure_ascii=False) + "\n")
        if flush:
            out.flush()
        count += 1
    return count


def cmd_classify(args: argparse.Namespace) -> int:
    import jieba

    jieba.setLogLevel(logging.WARNING)  # stdout is data; keep stderr for real problems
    rules, problem = asyncio.run(load_rules(Settings()))
    if problem is not None:
        print(f"ticketbot classify: database not readable ({problem}); using the shipped default rules",
              file=sys.stderr)
    if args.texts:
        texts: Iterable[str] = args.texts
        interactive = False
    else:
        stdin = io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="replace", newline="")
        texts = lines_of(stdin)
        interactive = sys.stdin.isatty()
    out = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", newline="\n", line_buffering=interactive)
    try:
        classify_lines(rules, texts, out, explain=args.explain, flush=interactive)
    finally:
        out.flush()
        out.detach()
    return 0
