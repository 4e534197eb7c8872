"""Master data at scale: bulk import speed, and lookups by normalised SN / plate / phone at 1 M assets.

    python bench/masterdata_bench.py [--people 10000] [--assets 100000] [--lookup-assets 1000000]
                                     [--customers 500000] [--lookups 3000] [--dir DIR]

1. Import: CSV files written like an admin would export them (10 stores, `--people` staff of every
   role with WeCom ids, supervisors and teams; `--assets` assets with SN, plate or VIN, store,
   warranty and parameters) go through the real `ticketbot import` path (parsing, checks against
   the database, audited batches) on a fresh SQLite database. Target (issue 20): people + assets
   ≤ 60 s on this machine.
2. Lookups: the assets table is filled to `--lookup-assets` rows and `--customers` customers (with
   their phones) with plain SQL inserts, then `uow.masterdata().find_asset("sn"|"plate", key)` and
   `customers_by_phone(phone)` are timed one by one for random existing keys (and misses), each
   inside a unit of work as intake would call them. Target: p99 ≤ 2 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.cli.imports import run_masterdata_import
from bot.settings import Settings
from core.masterdata.identifiers import vin_check_digit
from storage.database import create_engine, session_factory
from storage.unit_of_work import SqlUnitOfWork

IMPORT_TARGET_S = 60.0
LOOKUP_TARGET_MS = 2.0
PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"
PLATE_CHARS = "ABCDEFGHJKLMNPQRSTUVWXYZ0123456789"
VIN_CHARS = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789"
ROLES = ["技师"] * 70 + ["主管"] * 8 + ["仓库"] * 5 + ["质检"] * 5 + ["专家"] * 5 + ["前台"] * 5 + ["管理员"] * 2


def plate(i: int) -> str:
    rest = "".join(PLATE_CHARS[(i // 34 ** k) % 34] for k in range(5))
    return f"{PROVINCES[i % len(PROVINCES)]}{PLATE_CHARS[(i // 7) % 24]}{rest}"


def vin(i: int) -> str:
    body = f"LSV{VIN_CHARS[i % 33]}{VIN_CHARS[(i // 33) % 33]}{i % 1000:03d}0{(i // 1000) % 100:02d}{i:06d}"[:17]
    body = body.ljust(17, "0")
    return body[:8] + vin_check_digit(body) + body[9:]


def sn(i: int) -> str:
    return f"KFR-{35 + i % 40}GW/N{i:08d}"


def sn_key(i: int) -> str:
    return sn(i).replace("-", "").replace("/", "")


def write_files(root: Path, people: int, assets: int) -> dict[str, Path]:
    files = {}
    stores = ["门店编号,门店名称,地址,纬度,经度,营业时间,电话"]
    stores += [f"S{s:02d},门店{s},上海市某区某路{s}号,{31 + s / 100:.4f},{121 + s / 100:.4f},9:00-18:00,021-5080{s:04d}"
               for s in range(10)]
    teams = ["班组编号,班组名称,门店"] + [f"T{t:03d},班组{t},S{t % 10:02d}" for t in range(100)]
    staff = ["工号,姓名,角色,电话,门店,班组,直属主管,企业微信,在职"]
    for p in range(people):
        role = ROLES[p % len(ROLES)]
        boss = "" if p < 100 else f"P{p % 100:05d}"  # the first hundred are everyone's supervisors
        staff.append(f"P{p:05d},员工{p},{role if p >= 100 else '主管'},1{38 + p % 2}{p:08d},S{p % 10:02d},"
                     f"T{p % 100:03d},{boss},wx{p:05d},是")
    rows = ["资产编号,序列号,VIN,车牌,品牌,型号,门店,安装日期,保修截止,技术参数"]
    start = date(2024, 1, 1)
    for a in range(assets):
        kind = a % 10
        serial = sn(a) if kind < 7 else ""
        car_vin = vin(a) if kind in (7, 8) else ""
        car_plate = plate(a) if kind >= 8 else ""
        warranty = start + timedelta(days=365 + a % 1000)
        rows.append(f"{'' if a % 2 else f'AS{a:06d}'},{serial},{car_vin},{car_plate},格力,KFR-{35 + a % 40}GW,"
                    f"S{a % 10:02d},{start + timedelta(days=a % 365)},{warranty},匹数=1.5；冷媒=R32")
    for name, lines in (("stores", stores), ("teams", teams), ("people", staff), ("assets", rows)):
        path = root / f"{name}.csv"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        files[name] = path
    return files


async def bench_import(root: Path, people: int, assets: int) -> dict[str, float]:
    url = f"sqlite:///{root / 'import.db'}"
    settings = Settings(_env_file=None, database_url=url, data_dir=root / "data")  # type: ignore[call-arg]
    files = write_files(root, people, assets)
    timings: dict[str, float] = {}
    for kind in ("stores", "teams", "people", "assets"):
        started = time.perf_counter()
        body = await run_masterdata_import(settings, kind, files[kind])
        timings[kind] = time.perf_counter() - started
        if body["failed"]:
            errors = json.dumps(body["errors"][:3], ensure_ascii=False)
            raise SystemExit(f"{kind}: {body['failed']} rows failed: {errors}")
        print(f"  import {kind:<7} {body['imported']:>7} rows in {timings[kind]:6.2f} s")
    return timings


def fill_for_lookups(path: Path, assets: int, customers: int) -> int:
    """Plain inserts up to `assets` assets in all; returns how many were added (keys L0000000 ...)."""
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=OFF")
    have = db.execute("SELECT count(*) FROM assets").fetchone()[0]
    added = max(0, assets - have)
    db.execute("BEGIN")
    db.executemany(
        "INSERT INTO assets (id, sn_key, vin, plate, display_id, brand, model, store_id, customer_id, installed_on,"
        " purchased_on, warranty_end, params) VALUES (?, ?, ?, ?, '', '格力', 'KFR-35GW', 'S01', NULL, NULL, NULL,"
        " '2027-01-01', '{}')",
        ((f"L{a:07d}", f"LK{sn_key(a)}", None, f"{plate(a)[:2]}{a:06d}"[:8] if a % 3 == 0 else None)
         for a in range(added)))
    db.executemany("INSERT INTO people (id, name, role, phone, preferred_channel, active) VALUES (?, ?, 'customer', ?,"
                   " 'local', 1)", ((f"C{c:07d}", f"客户{c}", f"15{c:09d}") for c in range(customers)))
    db.executemany("INSERT INTO customers (person_id, phones, addresses, company, service_level) VALUES (?, ?, '[]',"
                   " '', '')", ((f"C{c:07d}", json.dumps([f"15{c:09d}"])) for c in range(customers)))
    db.executemany("INSERT INTO customer_phones (phone, person_id) VALUES (?, ?)",
                   ((f"15{c:09d}", f"C{c:07d}") for c in range(customers)))
    db.execute("COMMIT")
    db.execute("ANALYZE")
    db.close()
    return added


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def bench_lookups(root: Path, assets: int, customers: int, lookups: int) -> dict[str, tuple[float, float]]:
    path = root / "import.db"
    started = time.perf_counter()
    added = fill_for_lookups(path, assets, customers)
    total = sqlite3.connect(path).execute("SELECT count(*) FROM assets").fetchone()[0]
    print(f"  filled to {total:,} assets and {customers:,} customers in {time.perf_counter() - started:.1f} s")
    engine = create_engine(f"sqlite:///{path}")
    sessions = session_factory(engine)
    rng = random.Random(20)
    results: dict[str, tuple[float, float]] = {}

    async def timed(name: str, keys: list[Any], call: Callable[[Any, Any], Awaitable[Any]]) -> None:
        samples = []
        async with SqlUnitOfWork(sessions) as uow:
            md = uow.masterdata()
            for key in keys[:50]:  # warm the page cache and the statement plans
                await call(md, key)
            for key in keys:
                t0 = time.perf_counter()
                await call(md, key)
                samples.append((time.perf_counter() - t0) * 1000)
        results[name] = (statistics.median(samples), percentile(samples, 0.99))

    sn_keys = [f"LK{sn_key(rng.randrange(added))}" for _ in range(lookups)]
    plates = [f"{plate(a)[:2]}{a:06d}"[:8] for a in (rng.randrange(0, added, 3) for _ in range(lookups))]
    phones = [f"15{rng.randrange(customers):09d}" for _ in range(lookups)]
    misses = [f"NOSUCH{rng.randrange(10 ** 9)}" for _ in range(lookups)]
    try:
        await timed("find_asset sn", sn_keys, lambda md, k: md.find_asset("sn", k))
        await timed("find_asset plate", plates, lambda md, k: md.find_asset("plate", k))
        await timed("find_asset any (miss)", misses, lambda md, k: md.find_asset("any", k))
        await timed("customers_by_phone", phones, lambda md, k: md.customers_by_phone(k))
        async with SqlUnitOfWork(sessions) as uow:  # the keys do find what they look up
            assert (await uow.masterdata().find_asset("sn", sn_keys[0])) is not None
            assert (await uow.masterdata().find_asset("plate", plates[0])) is not None
            assert len(await uow.masterdata().customers_by_phone(phones[0])) == 1
    finally:
        await engine.dispose()
    return results


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--people", type=int, default=10_000)
    parser.add_argument("--assets", type=int, default=100_000)
    parser.add_argument("--lookup-assets", type=int, default=1_000_000)
    parser.add_argument("--customers", type=int, default=500_000)
    parser.add_argument("--lookups", type=int, default=3_000)
    parser.add_argument("--dir", type=Path, default=None, help="keep the files and database here")
    args = parser.parse_args()
    root = args.dir or Path(tempfile.mkdtemp(prefix="masterdata_bench_"))
    root.mkdir(parents=True, exist_ok=True)
    print(f"master data bench in {root}")
    timings = await bench_import(root, args.people, args.assets)
    measured = timings["people"] + timings["assets"]
    lookups = await bench_lookups(root, args.lookup_assets, args.customers, args.lookups)
    print()
    print(f"{'measure':<52}{'result':>20}{'target':>10}")
    print(f"{f'import {args.people:,} people + {args.assets:,} assets':<52}{f'{measured:.1f} s':>20}"
          f"{f'≤ {IMPORT_TARGET_S:.0f} s':>10}  {'ok' if measured <= IMPORT_TARGET_S else 'MISSED'}")
    people_s, assets_s = f"{timings['people']:.1f} s", f"{timings['assets']:.1f} s"
    print(f"{'  of which people':<52}{people_s:>20}")
    print(f"{'  of which assets':<52}{assets_s:>20}")
    for name, (p50, p99) in lookups.items():
        label = f"{name} at {args.lookup_assets:,} assets, p50 / p99"
        print(f"{label:<52}{f'{p50:.3f} / {p99:.3f} ms':>20}{f'≤ {LOOKUP_TARGET_MS:.0f} ms':>10}  "
              f"{'ok' if p99 <= LOOKUP_TARGET_MS else 'MISSED'}")


if __name__ == "__main__":
    asyncio.run(main())
