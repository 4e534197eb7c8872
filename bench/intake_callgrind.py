"""Intake cost in CPU instructions: a fixed number of fault reports through a door into
`ticketbot serve` running under valgrind's callgrind, counted only while the reports are handled.

    python bench/intake_callgrind.py [--via playground wecom feishu dingtalk] [--tickets 300] [--connections 8]
                                     [--warm-up 60] [--postgres ADMIN_URL]

Why. On a shared machine wall-clock rates and even CPU ms per ticket move with the neighbours'
load (caches, hyper-threads, the scheduler); the number of instructions the service executes for
N tickets does not. Comparing two trees (issue 20: intake before and after master data) by
instructions per ticket is a deterministic check of the per-ticket work, to put beside
bench/intake.py's throughput figures. Same service, same doors, same reports as intake.py (each from
a new sender, so each is a new ticket; SQLite; the demo directory).

`--via` (one or several, measured one after the other, each on a service of its own): the playground,
or a chat door — encrypted, signed WeCom callbacks or Feishu event pushes (bench/intake.py's requests),
the service answering through the fake platform API of tests/fakes/ in a process of its own (not
counted), or DingTalk robot messages down the fake stream gateway (in this process). A chat door's
count ends when every report is fully processed: its inbox row handled and the answer's outbox row
sent (no row pending). With several doors the last column is each door's ratio to the first's
instructions per ticket (issue 24: a chat door within 1.5x the playground's CPU per ticket — a ratio
of instructions the neighbours' load cannot move, unlike intake.py's CPU ms).

How. The service starts under callgrind with instrumentation off (`--instr-atstart=no`), is warmed
up (classifier loaded, first tickets through every path), then instrumentation is switched on
(`callgrind_control -i on`), the reports are sent in a closed loop, and the counts are dumped
(`callgrind_control -d`). Printed: instructions (Ir) per ticket, from the dump's totals. Background
loops of the service (pollers) run meanwhile by the wall clock, which under valgrind runs ~50x
longer per ticket than natively and moves with the machine's load: their rate is measured in an idle
window afterwards (`--idle` seconds, counters zeroed) and taken out ("net of idling"; the raw figure
is printed too). Takes a few minutes (valgrind is ~50x slower).

`--postgres ADMIN_URL` (e.g. postgresql://postgres@127.0.0.1:5432/postgres): the service runs on a new
PostgreSQL database made there (dropped afterwards) instead of SQLite. The server's own work is not
counted, nor the kernel's (callgrind counts the service's user-space instructions): a measure of what
ticketbot's Python does per ticket on that engine, round trips' kernel time left out.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from intake import DingTalkDoor, Load, http_door, http_sender, pending_rows, run_load, serve_fake  # bench/
from pg_scratch import drop_postgres, fresh_postgres

ROOT = Path(__file__).resolve().parent.parent
DOORS = ("playground", "wecom", "feishu", "dingtalk")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, timeout_s: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return time.monotonic() - start
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"{url} not ready after {timeout_s} s")


async def send_reports(send: Any, make: Any, prefix: str, count: int, connections: int) -> int:
    """`count` reports from new senders, closed loop: how many the door accepted."""
    load = Load()
    await run_load(send, make, prefix, duration=1e9, connections=connections, rate=0, load=load, count=count)
    return len(load.accepted)


async def wait_processed(db: Path | None, door: str) -> None:
    """A chat door's reports handled and answered: nothing pending in the inbox or the outbox (the
    playground answers in its request; on PostgreSQL the requests' answers are the check)."""
    if door == "playground" or db is None:
        return
    await asyncio.sleep(1)
    while pending_rows(db):
        await asyncio.sleep(1)


def control(*args: str) -> None:
    subprocess.run(["callgrind_control", *args], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@dataclass
class Counted:
    door: str
    ready_s: float
    warmed: int
    done: int
    elapsed_s: float
    instructions: int
    idle_rate: float  # Ir per second of idling
    kept: Path | None

    @property
    def net_per_ticket(self) -> float:
        return (self.instructions - self.idle_rate * self.elapsed_s) / max(self.done, 1)


async def count_door(door: str, args: argparse.Namespace) -> Counted:
    """One service under callgrind, `door`'s reports counted (see the module's docstring). Async: the
    DingTalk gateway lives in this process's loop, which must keep running while the service works."""
    ctx = mp.get_context("spawn")
    stop, results, ports = ctx.Event(), ctx.Queue(), ctx.Queue()
    fake_proc, dingtalk = None, None
    port = free_port()
    if door == "dingtalk":
        dingtalk = DingTalkDoor()
        env = await dingtalk.start()
        make, send_to = dingtalk.make, None
    else:
        fake: dict[str, Any] = {}
        if door != "playground":
            fake_proc = ctx.Process(target=serve_fake, args=(door, ports, stop, results), daemon=True)
            fake_proc.start()
            fake = await asyncio.to_thread(ports.get, timeout=60)
        door_in = http_door(door, fake)
        env, make, send_to = door_in.env, door_in.make, f"http://127.0.0.1:{port}{door_in.path}"
    workdir = Path(tempfile.mkdtemp(prefix="tb-callgrind-"))
    database_url = await fresh_postgres(args.postgres, "tb_callgrind") if args.postgres else None
    db = None if database_url else workdir / "bench.db"
    env_process = subprocess.Popen(
        ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={workdir / 'cg.out'}",
         sys.executable, "-m", "bot.cli", "serve", "--port", str(port)],
        cwd=workdir, env={**_service_env(workdir, database_url), **env},
        stdout=open(workdir / "serve.log", "wb"), stderr=subprocess.STDOUT)  # noqa: SIM115
    pid = str(env_process.pid)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as session:
            send = dingtalk.send if dingtalk is not None else http_sender(session, str(send_to))
            ready = await asyncio.to_thread(wait_ready, f"http://127.0.0.1:{port}/healthz", 900)
            if dingtalk is not None:
                await dingtalk.gateway.wait_connections(1, timeout=300)
            warmed = await send_reports(send, make, "warm-", args.warm_up, args.connections)
            await wait_processed(db, door)
            await asyncio.sleep(5)  # what the warm-up left running (the classifier's background load) settles
            await asyncio.to_thread(control, "-i", "on", pid)
            started = time.monotonic()
            done = await send_reports(send, make, "count-", args.tickets, args.connections)
            await wait_processed(db, door)
            elapsed = time.monotonic() - started
            await asyncio.to_thread(control, "-d", pid)
            await asyncio.sleep(1)
            instructions = _dumped(workdir)
            # The service's background loops (timer loop, outbox sweep, webhook dispatcher) poll by the
            # wall clock, and under valgrind the counted window lasts ~50x longer than natively: their
            # instructions per second of idling are measured next and taken out of the per-ticket figure.
            await asyncio.to_thread(control, "-z", pid)
            idle_started = time.monotonic()
            await asyncio.sleep(args.idle)
            await asyncio.to_thread(control, "-d", pid)
            idle_s = time.monotonic() - idle_started
            await asyncio.sleep(1)
            idle_rate = _dumped(workdir) / idle_s
    finally:
        env_process.terminate()
        try:
            await asyncio.to_thread(env_process.wait, 60)
        except subprocess.TimeoutExpired:
            env_process.kill()
        stop.set()
        if fake_proc is not None:
            fake_proc.join(timeout=10)
            if fake_proc.is_alive():
                fake_proc.terminate()
        if dingtalk is not None:
            await dingtalk.close()
        if database_url is not None:
            await drop_postgres(args.postgres, database_url)
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    return Counted(door, ready, warmed, done, elapsed, instructions, idle_rate, workdir if args.keep else None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--via", nargs="+", choices=DOORS, default=["playground"],
                        help="doors, one after the other (the ratio column is to the first)")
    parser.add_argument("--tickets", type=int, default=300, help="reports counted")
    parser.add_argument("--connections", type=int, default=8, help="reports in flight (closed loop)")
    parser.add_argument("--warm-up", type=int, default=60, help="reports before counting starts")
    parser.add_argument("--postgres", default=None,
                        help="admin URL of a PostgreSQL server: run on a new database there (playground only)")
    parser.add_argument("--idle", type=float, default=20.0, help="seconds of idling measured after the reports")
    parser.add_argument("--keep", action="store_true",
                        help="keep the folder with callgrind's dumps (for callgrind_annotate) and print its path")
    args = parser.parse_args()
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        sys.exit("valgrind (callgrind) is not installed")
    if args.postgres and args.via != ["playground"]:
        sys.exit("--postgres counts the playground only (a chat door's end is read from the SQLite file)")
    engine = "PostgreSQL" if args.postgres else "SQLite"
    rows = []
    for door in args.via:
        row = asyncio.run(count_door(door, args))
        rows.append(row)
        print(f"tree {ROOT} on {engine}, {door}: ready under callgrind in {row.ready_s:.0f} s; {row.warmed} warm-up "
              f"reports; {row.done}/{args.tickets} counted reports processed in {row.elapsed_s:.0f} s under "
              f"callgrind ({args.connections} connections)", flush=True)
        print(f"instructions per ticket: {row.net_per_ticket / 1e6:.3f} M net of idling "
              f"({row.instructions / max(row.done, 1) / 1e6:.3f} M raw, total {row.instructions / 1e9:.3f} G Ir; "
              f"idling {row.idle_rate / 1e6:.2f} M Ir/s, x {row.elapsed_s:.0f} s counted)", flush=True)
        if row.kept is not None:
            print(f"callgrind dumps kept in {row.kept} (the counted window: the dump numbered .1)")
    if len(rows) > 1:
        print(f"{'door':<12}{'M instr/ticket':>16}{'x ' + rows[0].door:>16}")
        for row in rows:
            ratio = row.net_per_ticket / rows[0].net_per_ticket
            print(f"{row.door:<12}{row.net_per_ticket / 1e6:>16.3f}{ratio:>16.2f}")


def _service_env(workdir: Path, database_url: str | None = None) -> dict[str, str]:
    """As bench/intake.py starts the service: SQLite in the folder (or `database_url`), the playground on."""
    dropped = ("REDIS_URL", "PYTHONDONTWRITEBYTECODE", "DATABASE_URL", "PROCESS_INBOX")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("WECOM_", "FEISHU_", "DINGTALK_")) and k not in dropped}
    env.update(DATABASE_URL=database_url or f"sqlite:///{workdir / 'bench.db'}", DATA_DIR=str(workdir),
               PLAYGROUND="on", PYTHONPATH=str(ROOT))
    return env


def _dumped(folder: Path) -> int:
    """Ir of the dump made while counting: the newest numbered dump file (`cg.out.<pid>.<n>` or `cg.out.<n>`)."""
    dumps = [p for p in folder.glob("cg.out*") if re.search(r"\.\d+$", p.name)]
    newest = max(dumps, key=lambda p: p.stat().st_mtime) if dumps else folder / "cg.out"
    text = newest.read_text(errors="replace")
    match = re.search(r"^(?:totals|summary):\s+(\d+)", text, re.M)
    if match is None:
        raise RuntimeError(f"no totals in {newest}")
    return int(match.group(1))


if __name__ == "__main__":
    main()
