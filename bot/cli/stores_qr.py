"""`ticketbot stores qr [--out DIR]`: one PNG and one SVG QR code per active store, to print.

With 微信客服 configured the code opens the store's 微信客服 chat: kf/add_contact_way with the
store code as `scene` (asked once per store, cached in the database), plus `scene_param=<store
code>`, which enter_session brings back so the customer belongs to that store. Without it the code
opens the store's report page `PUBLIC_BASE_URL/r/<store code>`.

Prints one JSON object: {"out", "target": "wecom_kf"|"report_page", "stores": [{"store", "name",
"url", "png", "svg"}], "failed": [{"store", "error"}]}; exits 1 when a store failed, 2 when the
database cannot be used.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import re
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

from bot.settings import Settings

EXIT_FAILED = 1
EXIT_UNUSABLE = 2
_SAFE = re.compile(r"[^0-9A-Za-z_-]")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    stores = subparsers.add_parser("stores", help="store tools")
    actions = stores.add_subparsers(dest="stores_command", metavar="ACTION")
    qr = actions.add_parser("qr", help="write one PNG and one SVG QR code per active store")
    qr.add_argument("--out", default="store-qr", help="folder for the images (default ./store-qr)")
    qr.set_defaults(func=cmd_qr)


def file_stem(store_code: str) -> str:
    """A file name for any store code (codes may hold '/' or Chinese): safe, and still unique."""
    safe = _SAFE.sub("_", store_code)
    return safe if safe == store_code else f"{safe}-{hashlib.sha1(store_code.encode()).hexdigest()[:8]}"


def write_codes(url: str, out: Path, stem: str) -> tuple[Path, Path]:
    import segno

    code = segno.make(url, error="m", micro=False)
    png, svg = out / f"{stem}.png", out / f"{stem}.svg"
    code.save(str(png), scale=8, border=4)
    code.save(str(svg), scale=8, border=4, title=url)
    return png, svg


async def make_codes(settings: Settings, out: Path) -> dict[str, Any]:
    from sqlalchemy import select
    from sqlmodel import col

    from storage.database import create_engine, session_factory
    from storage.migrate import upgrade
    from storage.tables import StoreRow

    url = settings.resolved_database_url()
    await asyncio.to_thread(upgrade, url)
    engine = create_engine(url)
    adapter: Any = None
    try:
        sessions = session_factory(engine)
        async with sessions() as session:
            stores = (await session.execute(select(StoreRow).where(col(StoreRow.active)).order_by(col(StoreRow.id))))
            rows = list(stores.scalars())
        if settings.wecom_kf_enabled:
            adapter = _kf_adapter(settings, sessions)
        out.mkdir(parents=True, exist_ok=True)
        base = settings.public_base("127.0.0.1", 8080)
        done: list[dict[str, Any]] = []
        failed: list[dict[str, str]] = []
        for store in rows:
            try:
                target = await adapter.contact_way(store.id) if adapter else f"{base}/r/{quote(store.id, safe='')}"
                png, svg = write_codes(target, out, file_stem(store.id))
            except Exception as error:  # noqa: BLE001 - one store's failure is reported, the others go on
                failed.append({"store": store.id, "error": f"{type(error).__name__}: {error}"})
                continue
            done.append({"store": store.id, "name": store.name, "url": target, "png": str(png), "svg": str(svg)})
        return {"out": str(out), "target": "wecom_kf" if adapter else "report_page", "stores": done, "failed": failed}
    finally:
        if adapter is not None:
            await adapter.stop()
        await engine.dispose()


def _kf_adapter(settings: Settings, sessions: Any) -> Any:
    from adapters.wecom.kf import create_kf_adapter
    from bot.platforms.wecom_kf import kf_config_from_settings, kf_state
    from bot.token_cache import MemoryTokenCache
    from core.inbound import InboundMessage

    class NoInbox:  # this command receives nothing
        async def accept(self, message: InboundMessage) -> bool:
            return False

    return create_kf_adapter(kf_config_from_settings(settings), NoInbox(), MemoryTokenCache(), kf_state(sessions))


def cmd_qr(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    try:
        summary = asyncio.run(make_codes(Settings(), Path(args.out)))
    except (SQLAlchemyError, OSError) as error:
        print(f"cannot use the database: {type(error).__name__}: {error}", file=sys.stderr)
        return EXIT_UNUSABLE
    print(json.dumps(summary, ensure_ascii=False))
    return EXIT_FAILED if summary["failed"] else 0
