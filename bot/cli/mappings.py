"""`ticketbot mapping set|show|history|rollback` (issue 23, docs/api.md#field-mappings): a connected
system's field mapping (core/hub/mappings.py), versioned in config_versions.

- `set CLIENT FILE [--dry-run SAMPLE.json] [--note TEXT]`: check FILE (YAML or JSON) whole; with
  `--dry-run` print the diff to the current version and what the mapping makes of the sample, save
  nothing; else save it as the next version and print `{"client", "version", "diff"}`;
- `show CLIENT [--version N]`: the mapping's text (YAML as saved) and its version;
- `history CLIENT`: the versions, newest first (JSON);
- `rollback CLIENT VERSION`: that version's text again as the newest (checked again).

A refused mapping prints every problem with its line (`第 N 行：…`) on stderr and exits 1; an unknown
client or version exits 1 too. The running service sees a new version within a few seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from bot.cli.api_clients import _with_uow
from bot.settings import Settings

EXIT_REFUSED = 1
ACTOR = "system"  # the CLI is the operator at the host, as `api-client add`


class Refused(Exception):
    pass


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("mapping", help="field mappings per connected system (docs/api.md)")
    actions = parser.add_subparsers(dest="mapping_command", metavar="ACTION", required=True)
    put = actions.add_parser("set", help="check and save a mapping file (YAML or JSON) as the next version")
    put.add_argument("client", help="the system's API client name")
    put.add_argument("file", type=Path)
    put.add_argument("--dry-run", metavar="SAMPLE.json", type=Path,
                     help="save nothing: show the diff and what the mapping makes of this sample body")
    put.add_argument("--note", default="", help="why (kept in the history)")
    put.set_defaults(func=lambda args: _run(_set, args))
    show = actions.add_parser("show", help="the mapping as saved")
    show.add_argument("client")
    show.add_argument("--version", type=int)
    show.set_defaults(func=lambda args: _run(_show, args))
    history = actions.add_parser("history", help="the versions, newest first (JSON)")
    history.add_argument("client")
    history.set_defaults(func=lambda args: _run(_history, args))
    rollback = actions.add_parser("rollback", help="make an earlier version the newest")
    rollback.add_argument("client")
    rollback.add_argument("version", type=int)
    rollback.set_defaults(func=lambda args: _run(_rollback, args))


def _read(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise Refused(f"cannot read {what} {path}: {error}") from error


async def _client(uow: Any, client: str) -> None:
    if await uow.hub().client(client) is None:
        raise Refused(f"no API client named {client} (ticketbot api-client list)")


async def _categories(uow: Any) -> list[str]:
    from bot.rules.rulebook import stored_rules

    return [c.name for c in await stored_rules(uow)]


async def _set(settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    from core.hub import mappings

    text = _read(args.file, "mapping file")
    sample: dict[str, Any] | None = None
    if args.dry_run is not None:
        try:
            loaded = json.loads(_read(args.dry_run, "sample"))
        except ValueError as error:
            raise Refused(f"the sample {args.dry_run} is not JSON: {error}") from error
        if not isinstance(loaded, dict):
            raise Refused(f"the sample {args.dry_run} must be a JSON object")
        sample = loaded

    async def work(uow: Any, now: Any) -> dict[str, Any]:
        await _client(uow, args.client)
        categories = await _categories(uow)
        before = await mappings.current(uow, args.client)
        previous = before.source if before else ""
        if sample is not None:
            mapping = mappings.parse(args.client, text, categories=categories)
            return {"client": args.client, "dry_run": True, "current_version": before.version if before else None,
                    "diff": mappings.diff(previous, text), "result": mappings.dry_run(mapping, sample)}
        version, _ = await mappings.save(uow, args.client, text, categories=categories, actor_id=ACTOR, at=now,
                                         note=args.note)
        return {"client": args.client, "version": version,
                "diff": mappings.diff(previous, text, before_name="previous", after_name=f"v{version}")}

    return await _with_uow(settings, work)


async def _show(settings: Settings, args: argparse.Namespace) -> str:
    from core.hub import mappings

    async def work(uow: Any, now: Any) -> str:
        stored = (await mappings.version_of(uow, args.client, args.version) if args.version
                  else await mappings.current(uow, args.client))
        if stored is None:
            raise Refused(f"{args.client} has no field mapping" + (f" version {args.version}" if args.version else ""))
        return f"# {args.client} v{stored.version}\n{stored.source}"

    return await _with_uow(settings, work)


async def _history(settings: Settings, args: argparse.Namespace) -> list[dict[str, Any]]:
    from core.hub import mappings

    return await _with_uow(settings, lambda uow, now: mappings.history(uow, args.client))


async def _rollback(settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    from core.hub import mappings

    async def work(uow: Any, now: Any) -> dict[str, Any]:
        await _client(uow, args.client)
        if await mappings.version_of(uow, args.client, args.version) is None:
            raise Refused(f"{args.client} has no mapping version {args.version} (ticketbot mapping history "
                          f"{args.client})")
        version, _ = await mappings.rollback(uow, args.client, args.version, categories=await _categories(uow),
                                             actor_id=ACTOR, at=now)
        return {"client": args.client, "version": version, "rolled_back_to": args.version}

    return await _with_uow(settings, work)


def _run(action: Callable[[Settings, argparse.Namespace], Coroutine[Any, Any, Any]], args: argparse.Namespace) -> int:
    from core.errors import InvalidInput
    from core.hub.mappings import MappingRejected

    try:
        result: Any = asyncio.run(action(Settings(), args))
    except Refused as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_REFUSED
    except MappingRejected as error:  # every problem on its own line, with its line number
        print(f"error: {getattr(args, 'file', args.client)}: the mapping was not saved", file=sys.stderr)
        for line, message in error.problems:
            print(f"  第 {line} 行：{message}" if line else f"  {message}", file=sys.stderr)
        return EXIT_REFUSED
    except InvalidInput as error:
        print(f"error: {error.user_message}", file=sys.stderr)
        return EXIT_REFUSED
    print(result if isinstance(result, str) else json.dumps(result, ensure_ascii=False, indent=2))
    return 0
