"""Intake cost in CPU instructions: a fixed number of fault reports through the playground into
`ticketbot serve` running under valgrind's callgrind, counted only while the reports are handled.

    python bench/intake_callgrind.py [--tickets 300] [--connections 8] [--warm-up 60] [--postgres ADMIN_URL]

Why. On a shared machine wall-clock rates and even CPU ms per ticket move with the neighbours'
load (caches, hyper-threads, the scheduler); the number of instructions the service executes for
N tickets does not. Comparing two trees (issue 20: intake before and after master data) by
instructions per ticket is a deterministic check of the per-ticket work, to put beside
bench/intake.py's throughput figures. Same service, same door, same reports as intake.py (each from
a new sender, so each is a new ticket; SQLite; the demo directory).

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
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import aiohttp
from pg_scratch import drop_postgres, fresh_postgres  # bench/, on sys.path when run as a script

ROOT = Path(__file__).resolve().parent.parent
FAULT = "底盘有异响，开起来咣当咣当的"  # bench/intake.py's report


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


async def send_reports(port: int, prefix: str, count: int, connections: int) -> int:
    url = f"http://127.0.0.1:{port}/playground/api/messages"
    numbers = iter(range(count))
    ok = 0

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal ok
        for i in numbers:
            body = json.dumps({"user": f"{prefix}{i}", "text": FAULT}, ensure_ascii=False).encode()
            async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as resp:
                await resp.read()
                ok += resp.status == 200

    timeout = aiohttp.ClientTimeout(total=None)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        await asyncio.gather(*(client(session) for _ in range(connections)))
    return ok


def control(*args: str) -> None:
    subprocess.run(["callgrind_control", *args], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tickets", type=int, default=300, help="reports counted")
    parser.add_argument("--connections", type=int, default=8, help="reports in flight (closed loop)")
    parser.add_argument("--warm-up", type=int, default=60, help="reports before counting starts")
    parser.add_argument("--postgres", default=None,
                        help="admin URL of a PostgreSQL server: run on a new database there")
    parser.add_argument("--idle", type=float, default=20.0, help="seconds of idling measured after the reports")
    parser.add_argument("--keep", action="store_true",
                        help="keep the folder with callgrind's dumps (for callgrind_annotate) and print its path")
    args = parser.parse_args()
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        sys.exit("valgrind (callgrind) is not installed")
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="tb-callgrind-"))
    database_url = asyncio.run(fresh_postgres(args.postgres, "tb_callgrind")) if args.postgres else None
    env_process = subprocess.Popen(
        ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={workdir / 'cg.out'}",
         sys.executable, "-m", "bot.cli", "serve", "--port", str(port)],
        cwd=workdir, env=_service_env(workdir, database_url),
        stdout=open(workdir / "serve.log", "wb"), stderr=subprocess.STDOUT)  # noqa: SIM115
    try:
        ready = wait_ready(f"http://127.0.0.1:{port}/healthz", timeout_s=900)
        warmed = asyncio.run(send_reports(port, "warm-", args.warm_up, args.connections))
        time.sleep(5)  # what the warm-up left running (the classifier's background load) settles
        control("-i", "on", str(env_process.pid))
        started = time.monotonic()
        done = asyncio.run(send_reports(port, "count-", args.tickets, args.connections))
        elapsed = time.monotonic() - started
        control("-d", str(env_process.pid))
        time.sleep(1)
        instructions = _dumped(workdir)
        # The service's background loops (timer loop, outbox sweep, webhook dispatcher) poll by the
        # wall clock, and under valgrind the counted window lasts ~50x longer than natively: their
        # instructions per second of idling are measured next and taken out of the per-ticket figure.
        control("-z", str(env_process.pid))
        idle_started = time.monotonic()
        time.sleep(args.idle)
        control("-d", str(env_process.pid))
        idle_s = time.monotonic() - idle_started
        time.sleep(1)
        idle_rate = _dumped(workdir) / idle_s
    finally:
        env_process.terminate()
        try:
            env_process.wait(60)
        except subprocess.TimeoutExpired:
            env_process.kill()
        if database_url is not None:
            asyncio.run(drop_postgres(args.postgres, database_url))
    engine = "PostgreSQL" if database_url else "SQLite"
    print(f"tree {ROOT} on {engine}: ready under callgrind in {ready:.0f} s; {warmed} warm-up reports; "
          f"{done}/{args.tickets} counted reports answered in {elapsed:.0f} s under callgrind "
          f"({args.connections} connections)")
    net = instructions - idle_rate * elapsed
    print(f"instructions per ticket: {net / max(done, 1) / 1e6:.3f} M net of idling "
          f"({instructions / max(done, 1) / 1e6:.3f} M raw, total {instructions / 1e9:.3f} G Ir; idling "
          f"{idle_rate / 1e6:.2f} M Ir/s measured over {idle_s:.0f} s, x {elapsed:.0f} s counted)")
    if args.keep:
        print(f"callgrind dumps kept in {workdir} (the counted window: the dump numbered .1)")
    else:
        shutil.rmtree(workdir, ignore_errors=True)


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
