"""How long the event loop of the real service stalls while staff do heavy things (issue 24, "nothing
holds the event loop for more than 50 ms").

    python bench/loop_stall.py                               # builds /tmp/stall/100k.db once (~2 min)
    python bench/loop_stall.py --base /tmp/stall/100k.db --only 报表,export   # some actions only
    python bench/loop_stall.py --retention 180               # also the retention purge's first pass

`ticketbot serve` (SQLite) runs on a copy of a database prefilled by bench/prefill_db.py (`--full-trail
--open-share 0.01`; its report aggregates folded once into `<base>-folded.db`, as a running service
would have them, so that the background fold does not run during the measurements). The service
is the real one, started through the CLI, with one addition made only here (`--probe-serve`): an
event-loop probe (a task that sleeps 5 ms and writes down how late it woke) and a watchdog thread
that, while the loop has not ticked for 40 ms, samples the loop thread's Python stack every 20 ms —
so the table can name what held the loop. From outside, a thread of this process polls `/healthz`
every 5 ms on a kept-alive connection.

Then a staff user does each heavy thing through its real door, one at a time: 报表 through the
playground chat, the console (signed in through the chat's 后台 link) — queues with filters, the
ticket file with its trail check, dashboards, exports (xlsx / csv / 报表 workbook / dashboards
workbook / traceability ZIP), the rules page's dry run — and the chat's 规则 / 测试派单 commands.
For each: its duration, the worst loop stall (the probe's largest lateness) during it, the loop
thread's own CPU time in its busiest probe interval (a stall with little CPU is the machine's load —
the process waiting for a core, the interpreter lock or the collector — not work held on the loop),
the p99 and max `/healthz` latency during it, the number of stalls > 50 ms, and the stack seen most
often in the stalls. `--retention DAYS` then restarts the service with CUSTOMER_DATA_RETENTION_DAYS=DAYS and
measures the same from ready until the purge's first pass has stored its watermark.

The machine is shared: the load average is printed with every figure; CPU ms of the service per
action is printed too (steadier than wall time).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import http.client
import os
import re
import secrets
import shutil
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

AUDIT_KEY = "stall-bench-key-0123456789abcdef"
PROBE_EVERY_S = 0.005
WATCH_AFTER_S = 0.040
SAMPLE_EVERY_S = 0.020
LIMIT_MS = 50.0


# --- the probe, inside the service process (`--probe-serve OUT -- serve --port N`) ---


def probe_serve(out_path: str, cli_args: list[str]) -> int:
    """Run `ticketbot <cli_args>` with a loop probe and a stack-sampling watchdog writing to `out_path`."""
    out = open(out_path, "w", buffering=1)  # noqa: SIM115 - lives as long as the process
    lock = threading.Lock()
    beat = [time.monotonic()]
    loop_thread = [0]
    tasks: list[asyncio.Task[None]] = []

    def write(line: str) -> None:
        with lock:
            out.write(line + "\n")

    async def probe() -> None:
        loop_thread[0] = threading.get_ident()
        while True:
            began = time.monotonic()
            cpu = time.thread_time()
            beat[0] = began
            await asyncio.sleep(PROBE_EVERY_S)
            woke = time.monotonic()
            beat[0] = woke
            late = (woke - began - PROBE_EVERY_S) * 1000
            if late >= 1.0:  # and the loop thread's own CPU meanwhile: work on the loop, not a wait for a core
                write(f"lag {woke:.6f} {late:.2f} {(time.thread_time() - cpu) * 1000:.2f}")

    def watchdog() -> None:
        while True:
            time.sleep(SAMPLE_EVERY_S / 2)
            ident = loop_thread[0]
            if not ident:
                continue
            quiet = time.monotonic() - beat[0]
            if quiet < WATCH_AFTER_S:
                continue
            frame = sys._current_frames().get(ident)
            frames: list[str] = []
            while frame is not None and len(frames) < 60:
                code = frame.f_code
                name = code.co_filename
                if str(ROOT) in name and "/.venv/" not in name:
                    frames.append(f"{os.path.relpath(name, ROOT)}:{frame.f_lineno}:{code.co_name}")
                frame = frame.f_back
            write(f"stack {time.monotonic():.6f} {quiet * 1000:.0f} {' < '.join(frames[:8])}")
            time.sleep(SAMPLE_EVERY_S / 2)

    class ProbedPolicy(asyncio.DefaultEventLoopPolicy):
        def new_event_loop(self) -> asyncio.AbstractEventLoop:
            loop = super().new_event_loop()
            loop.call_soon(lambda: tasks.append(loop.create_task(probe())))
            return loop

    collecting = [0.0]

    def on_gc(phase: str, info: dict[str, int]) -> None:  # a collection stops the loop too: name it
        if phase == "start":
            collecting[0] = time.monotonic()
        elif collecting[0]:
            took = (time.monotonic() - collecting[0]) * 1000
            if took >= 5.0:
                write(f"gc {time.monotonic():.6f} {took:.2f} {info.get('generation')}")

    gc.callbacks.append(on_gc)
    asyncio.set_event_loop_policy(ProbedPolicy())
    threading.Thread(target=watchdog, daemon=True, name="stall-watchdog").start()
    from bot.cli.root import main

    return int(main(cli_args) or 0)


# --- /healthz from outside ---


class HealthPoller:
    """GET /healthz every 5 ms (one at a time, kept-alive), recording (start, latency)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.samples: list[tuple[float, float]] = []
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="healthz-poller")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        while not self._stop.is_set():
            began = time.monotonic()
            try:
                conn.request("GET", "/healthz")
                resp = conn.getresponse()
                resp.read()
                ok = resp.status == 200
            except (OSError, http.client.HTTPException):
                ok = False
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            took = time.monotonic() - began
            if ok:
                self.samples.append((began, took))
            else:
                self.failures += 1
            rest = PROBE_EVERY_S - took
            if rest > 0:
                time.sleep(rest)
        conn.close()


# --- reading the probe's file ---


@dataclass
class ProbeLog:
    path: Path
    lags: list[tuple[float, float]] = field(default_factory=list)
    busy: list[tuple[float, float]] = field(default_factory=list)  # (when, loop thread CPU ms in that tick)
    stacks: list[tuple[float, float, str]] = field(default_factory=list)
    gcs: list[tuple[float, float]] = field(default_factory=list)  # (when, ms) of collections ≥ 5 ms
    _offset: int = 0

    def read(self) -> None:
        with self.path.open() as handle:
            handle.seek(self._offset)
            text = handle.read()
        cut = text.rfind("\n") + 1  # a half-written last line waits for the next read
        self._offset += len(text[:cut].encode())
        for line in text[:cut].splitlines():
            kind, _, rest = line.partition(" ")
            if kind == "lag":
                t, ms, cpu = rest.split()
                self.lags.append((float(t), float(ms)))
                self.busy.append((float(t), float(cpu)))
            elif kind == "gc":
                t, ms, _generation = rest.split()
                self.gcs.append((float(t), float(ms)))
            elif kind == "stack":
                t, quiet, *frames = rest.split(" ", 2)
                self.stacks.append((float(t), float(quiet), frames[0] if frames else ""))


@dataclass
class Figure:
    action: str
    seconds: float
    worst_ms: float
    worst_cpu_ms: float  # the loop thread's CPU in its busiest probe interval: a stall by work on the loop
    over: int  # probe ticks late by > LIMIT_MS
    health_p99_ms: float
    health_max_ms: float
    health_n: int
    cpu_ms: float
    culprit: str
    note: str = ""
    load: str = ""


def percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


def culprit_of(stacks: list[tuple[float, float, str]]) -> str:
    """The innermost project frames seen most often while the loop was stalled."""
    if not stacks:
        return ""
    counts = Counter(_where(s) for _t, _q, s in stacks)
    if not counts:
        return "(outside the project's code)"
    top, n = counts.most_common(1)[0]
    return f"{top} ({n}/{len(stacks)} samples)"


_PLUMBING = ("storage/sqlite/", "storage/database.py", "storage/types.py", "storage/transactions/")


def _where(stack: str) -> str:
    frames = _telling(stack.split(" < ")) if stack else []
    if not frames or frames[0].startswith(("bot/cli/root.py", "bench/loop_stall.py")):
        return "(no project code running: the loop idle or waiting for a core / the GIL / the collector)"
    return " < ".join(frames[:2])


def _telling(frames: list[str]) -> list[str]:
    """The frames from the first one that is not the statement plumbing (which every read goes through)."""
    for i, frame in enumerate(frames):
        if not frame.startswith(_PLUMBING):
            return frames[i:]
    return frames


def load_avg() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its reaped children (the export/report workers are live
    children: counted separately by `tree_cpu`)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def tree_cpu(pid: int) -> float:
    """CPU of the service and its live child processes (report / export workers)."""
    total = cpu_seconds(pid)
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    return total + sum(cpu_seconds(int(c)) for c in children)


# --- the database ---


def prepare_base(args: argparse.Namespace) -> Path:
    base: Path = args.base
    if not base.exists():
        base.parent.mkdir(parents=True, exist_ok=True)
        began = time.perf_counter()
        subprocess.run([sys.executable, str(ROOT / "bench" / "prefill_db.py"), "--sqlite", str(base), "--tickets",
                        str(args.tickets), "--full-trail", "--open-share", "0.01", "--audit-key", args.audit_key],
                       check=True)
        print(f"prefilled {base} in {time.perf_counter() - began:.0f} s", flush=True)
    folded = base.with_name(base.stem + "-folded" + base.suffix)
    if not folded.exists():
        began = time.perf_counter()
        partial = folded.with_suffix(".partial")
        shutil.copyfile(base, partial)
        asyncio.run(fold(partial))
        copy_reports(partial, folded)  # the aggregates' own file beside it (storage/report_store.py)
        partial.rename(folded)
        print(f"folded the report aggregates into {folded} in {time.perf_counter() - began:.0f} s", flush=True)
    return folded


async def fold(db: Path) -> None:
    from types import SimpleNamespace
    from zoneinfo import ZoneInfo

    from bot.chat.report_reads import shutdown_worker_process
    from bot.jobs.report_aggregates import ReportAggregator
    from core.clock import SystemClock
    from storage.database import create_engine, session_factory

    engine = create_engine(f"sqlite:///{db}")
    try:
        shim = SimpleNamespace(engine=engine, sessions=session_factory(engine), clock=SystemClock(),
                               service=SimpleNamespace(config=SimpleNamespace(timezone=ZoneInfo("Asia/Shanghai"))))
        await ReportAggregator(shim).catch_up()
    finally:
        await engine.dispose()
        shutdown_worker_process()


def copy_reports(source: Path, target: Path) -> None:
    """The report aggregates' file of `source` (storage/report_store.py) as `target`'s, consistently."""
    from storage.report_store import report_store_path

    src, dst = report_store_path(source), report_store_path(target)
    for suffix in ("", "-wal", "-shm"):
        Path(str(dst) + suffix).unlink(missing_ok=True)
    if src.exists():
        with sqlite3.connect(f"file:{src}?mode=ro", uri=True) as a, sqlite3.connect(dst) as b:
            a.backup(b)


def copy_database(base: Path, workdir: Path) -> Path:
    target = workdir / "ticketbot.db"
    for suffix in ("", "-wal", "-shm"):
        Path(str(target) + suffix).unlink(missing_ok=True)
    shutil.copyfile(base, target)
    copy_reports(base, target)
    return target


def sample_numbers(db: Path) -> dict[str, str]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        closed = conn.execute("SELECT number FROM tickets WHERE status = 'closed' ORDER BY created_at DESC "
                              "LIMIT 1 OFFSET 500").fetchone()[0]
        open_ = conn.execute("SELECT number FROM tickets WHERE status = 'pending_dispatch' LIMIT 1").fetchone()
        first = conn.execute("SELECT min(created_at) FROM tickets").fetchone()[0]
        tech = conn.execute("SELECT assignee_id FROM tickets WHERE assignee_id IS NOT NULL LIMIT 1").fetchone()[0]
    return {"closed": str(closed), "open": str(open_[0]) if open_ else str(closed), "first_day": str(first)[:10],
            "tech": str(tech)}


# --- the service ---


class Service:
    def __init__(self, db: Path, workdir: Path, audit_key: str, extra_env: dict[str, str] | None = None) -> None:
        from bench.intake import free_port

        self.port = free_port()
        self.workdir = workdir
        self.probe_path = workdir / f"probe-{self.port}.log"
        self.probe_path.write_text("")
        env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL", "PROCESS_INBOX")}
        env.update(DATABASE_URL=f"sqlite:///{db}", DATA_DIR=str(workdir / "data"), PLAYGROUND="on",
                   AUDIT_KEY=audit_key, LOAD_DEMO="off", PYTHONPATH=str(ROOT),
                   PUBLIC_BASE_URL=f"http://127.0.0.1:{self.port}", **(extra_env or {}))
        self.log = open(workdir / f"serve-{self.port}.log", "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--probe-serve", str(self.probe_path), "--",
             "serve", "--port", str(self.port)], cwd=workdir, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self.probe = ProbeLog(self.probe_path)
        self.poller = HealthPoller(self.port)
        self.url = f"http://127.0.0.1:{self.port}"

    def wait_ready(self) -> float:
        from bench.intake import wait_ready

        took = wait_ready(f"{self.url}/healthz", timeout_s=300)
        self.poller.start()
        return took

    def stop(self) -> None:
        self.poller.stop()
        self.process.terminate()
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()

    def window(self, action: str, began: float, ended: float, cpu_ms: float, note: str = "") -> Figure:
        time.sleep(0.05)  # the probe's tick after a stall is written when the loop is free again
        self.probe.read()
        lags = [ms for t, ms in self.probe.lags if began <= t <= ended + 0.05]
        busy = [ms for t, ms in self.probe.busy if began <= t <= ended + 0.05]
        stacks = [s for s in self.probe.stacks if began <= s[0] <= ended + 0.05]
        health = [lat * 1000 for t, lat in list(self.poller.samples) if began <= t <= ended]
        gcs = [ms for t, ms in self.probe.gcs if began <= t <= ended + 0.05]
        if gcs:
            note = (note + "; " if note else "") + f"GC ≥ 5 ms: {len(gcs)}, longest {max(gcs):.0f} ms"
        return Figure(action, ended - began, max(lags, default=0.0), max(busy, default=0.0),
                      sum(1 for ms in lags if ms > LIMIT_MS),
                      percentile(health, 0.99), max(health, default=float("nan")), len(health), cpu_ms,
                      culprit_of(stacks), note, load_avg())


# --- the actions ---

Action = Callable[[Any], Awaitable[str]]


class Staff:
    """The doors: the playground chat and the console (a session opened from the chat's 后台 link)."""

    def __init__(self, service: Service, session: Any) -> None:
        self.service = service
        self.http = session
        self.csrf = ""

    async def chat(self, user: str, text: str, expect: str = "") -> str:
        async with self.http.post(f"{self.service.url}/playground/api/messages",
                                  json={"user": user, "text": text}) as resp:
            body = await resp.json()
        if resp.status != 200:
            raise RuntimeError(f"{text!r} answered {resp.status}: {body}")
        answer = "\n".join(str(m.get("text") or m.get("card") or m) for m in body.get("messages", []))
        if expect and expect not in answer:
            raise RuntimeError(f"{text!r}: {expect!r} not in the answer: {answer[-400:]!r}")
        return answer

    async def sign_in(self, user: str) -> None:
        answer = await self.chat(user, "后台")
        match = re.search(r"/console/signin/[A-Za-z0-9_\-]+", answer)
        if match is None:
            raise RuntimeError(f"后台 gave no link: {answer[-400:]!r}")
        async with self.http.get(f"{self.service.url}{match.group(0)}") as resp:
            await resp.read()
            if resp.status != 200:
                raise RuntimeError(f"sign-in answered {resp.status}")
        page = await self.get("/console/admin/rules")
        found = re.search(r'name="csrf_token" value="([^"]+)"', page)
        self.csrf = found.group(1) if found else ""

    async def get(self, path: str, params: dict[str, str] | None = None, status: int = 200) -> str:
        size = 0
        async with self.http.get(f"{self.service.url}{path}", params=params) as resp:
            chunks = []
            async for chunk in resp.content.iter_chunked(256 * 1024):
                size += len(chunk)
                if size < 2_000_000:
                    chunks.append(chunk)
            if resp.status != status:
                raise RuntimeError(f"GET {path} {params} answered {resp.status}: {b''.join(chunks)[:300]!r}")
        if "text" in resp.headers.get("Content-Type", ""):
            return b"".join(chunks).decode("utf-8", "replace")
        return f"{size / 2**20:.1f} MB"

    async def post(self, path: str, form: dict[str, str]) -> str:
        async with self.http.post(f"{self.service.url}{path}", data={**form, "csrf_token": self.csrf}) as resp:
            text = await resp.text()
            if resp.status != 200:
                raise RuntimeError(f"POST {path} answered {resp.status}: {text[:300]!r}")
        return text


def actions(numbers: dict[str, str]) -> list[tuple[str, Callable[[Staff], Awaitable[str]]]]:
    closed, open_ = numbers["closed"], numbers["open"]
    year = {"from": numbers["first_day"], "status": "closed"}

    def chat(user: str, text: str, expect: str = "") -> Callable[[Staff], Awaitable[str]]:
        return lambda s: s.chat(user, text, expect)

    def get(path: str, params: dict[str, str] | None = None) -> Callable[[Staff], Awaitable[str]]:
        async def run(s: Staff) -> str:
            body = await s.get(path, params)
            return body if body.endswith(" MB") else f"{len(body) / 1024:.0f} kB"
        return run

    async def rules_preview(s: Staff) -> str:
        body = await s.post("/console/admin/rules/preview",
                            {"op": "add", "category": "电控类", "keywords": "跳闸测试词", "sample": "配电箱跳闸了"})
        return f"{len(body) / 1024:.0f} kB"

    return [
        ("chat 报表 7天 (admin: all stores)", chat("admin-0", "报表 7天", "工单报表")),
        ("chat 报表 30天 (admin)", chat("admin-0", "报表 30天", "报表")),
        ("chat 报表 30天 (supervisor, one store)", chat("sup-000", "报表 30天", "报表")),
        ("chat 报表 本月", chat("admin-0", "报表 本月", "报表")),
        ("chat 规则 测试 …", chat("admin-0", "规则 测试 配电箱跳闸了，灯不亮", "规则测试")),
        ("chat 规则 历史", chat("admin-0", "规则 历史")),
        ("chat 规则 列表", chat("admin-0", "规则 列表")),
        ("chat 测试派单 <open ticket>", chat("sup-000", f"测试派单 {open_}")),
        ("chat 中枢 状态", chat("admin-0", "中枢 状态")),
        ("console queue (open, default)", get("/console/")),
        ("console queue status=closed", get("/console/tickets", {"status": "closed"})),
        ("console queue closed, sort=priority", get("/console/tickets", {"status": "closed", "sort": "priority"})),
        ("console queue closed, sort=-updated_at", get("/console/tickets", {"status": "closed",
                                                                           "sort": "-updated_at"})),
        ("console queue closed, category", get("/console/tickets", {"status": "closed", "category": "空调"})),
        ("console queue closed, assignee", get("/console/tickets", {"status": "closed",
                                                                   "assignee": numbers["tech"]})),
        ("console queue q=text (all)", get("/console/tickets", {"status": "closed", "q": "漏水"})),
        ("console queue q=text, one year", get("/console/tickets", {**year, "q": "不制冷"})),
        ("console queue sla=ok, closed", get("/console/tickets", {"status": "closed", "sla": "ok"})),
        ("console queue sla=breached", get("/console/tickets", {"sla": "breached"})),
        ("console queue page 1000", get("/console/tickets", {"status": "closed", "page": "1000"})),
        ("console ticket file (trail check)", get(f"/console/tickets/{closed}")),
        ("console dashboards 30 days", get("/console/dashboards")),
        ("console dashboards one year", get("/console/dashboards", {"from": numbers["first_day"]})),
        ("console ops", get("/console/ops/")),
        ("console rules preview (dry run)", rules_preview),
        ("export tickets.csv (all closed)", get("/console/tickets.csv", {"status": "closed"})),
        ("export tickets.xlsx (all closed)", get("/console/tickets.xlsx", {"status": "closed"})),
        ("export reports.xlsx 30 days", get("/console/reports.xlsx", {"from": "", "to": ""})),
        ("export reports.xlsx one year", get("/console/reports.xlsx", {"from": numbers["first_day"]})),
        ("export dashboards.xlsx", get("/console/dashboards.xlsx")),
        ("export traceability.zip n=100", get("/console/traceability.zip", {"n": "100", "seed": "7"})),
        ("api /api/tickets?limit=500", get("/api/tickets", {"limit": "500"})),
    ]


def print_table(figures: list[Figure]) -> list[str]:
    lines = [f"| action | s | worst stall ms | loop CPU in a stall, max ms | stalls > {LIMIT_MS:.0f} ms "
             "| /healthz p99 / max ms (n) | CPU ms | load | held by (most seen stack) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for f in figures:
        flag = " **✗**" if f.worst_ms > LIMIT_MS else ""
        busy = " **✗**" if f.worst_cpu_ms > LIMIT_MS else ""
        lines.append(f"| {f.action}{(' — ' + f.note) if f.note else ''} | {f.seconds:.2f} | {f.worst_ms:.0f}{flag} "
                     f"| {f.worst_cpu_ms:.0f}{busy} "
                     f"| {f.over} | {f.health_p99_ms:.0f} / {f.health_max_ms:.0f} ({f.health_n}) | {f.cpu_ms:.0f} "
                     f"| {f.load} | {f.culprit} |")
    for line in lines:
        print(line, flush=True)
    return lines


async def measure(service: Service, staff: Staff, name: str, run: Callable[[Staff], Awaitable[str]],
                  settle_s: float) -> Figure:
    await asyncio.sleep(settle_s)
    cpu0 = tree_cpu(service.process.pid)
    began = time.monotonic()
    try:
        note = await run(staff)
        note = note if len(note) < 12 else ""  # a size ("48 kB"), not an answer's text
    except Exception as error:  # noqa: BLE001 - shown in the table, the other actions still run
        note = f"FAILED: {str(error)[:120]}"
    ended = time.monotonic()
    cpu = (tree_cpu(service.process.pid) - cpu0) * 1000
    return await asyncio.to_thread(service.window, name, began, ended, cpu, note)


async def run_actions(args: argparse.Namespace, db: Path, workdir: Path) -> list[Figure]:
    import aiohttp

    numbers = sample_numbers(db)
    service = Service(db, workdir, args.audit_key)
    figures: list[Figure] = []
    try:
        ready = service.wait_ready()
        print(f"service ready in {ready:.1f} s (port {service.port}); load {load_avg()}", flush=True)
        jar = aiohttp.CookieJar(unsafe=True)
        timeout = aiohttp.ClientTimeout(total=600)
        async with aiohttp.ClientSession(cookie_jar=jar, timeout=timeout) as session:
            staff = Staff(service, session)
            await asyncio.sleep(args.settle * 4)  # start-up's background work (jieba, timers) settles
            figures.append(await measure(service, staff, "idle (nothing asked)", lambda _s: asyncio.sleep(3, ""),
                                         args.settle))
            newcomer = f"stall-{secrets.token_hex(3)}"
            figures.append(await measure(service, staff, "first fault report after start",
                                         lambda s: s.chat(newcomer, "三楼配电箱跳闸了，整层没电", ""), args.settle))
            await staff.sign_in("admin-0")
            only = [w for w in (args.only or "").split(",") if w]
            for name, run in actions(numbers):
                if only and not any(w in name for w in only):
                    continue
                for attempt in range(args.repeat):
                    label = name if args.repeat == 1 else f"{name} #{attempt + 1}"
                    figure = await measure(service, staff, label, run, args.settle)
                    figures.append(figure)
                    print(f"  {label}: {figure.seconds:.2f} s, worst stall {figure.worst_ms:.0f} ms, /healthz p99 "
                          f"{figure.health_p99_ms:.0f} ms; {figure.note} {figure.culprit}", flush=True)
    finally:
        service.stop()
    return figures


def retention_pass(args: argparse.Namespace, db: Path, workdir: Path) -> Figure:
    """Restart with the retention set; from ready until the first pass stored its watermark."""
    watermarks = "SELECT count(*) FROM config_versions WHERE kind = 'privacy.retention_watermark'"
    purged = "SELECT count(*) FROM audit_events WHERE kind = 'contact_data_purged'"
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
        stored_before = conn.execute(watermarks).fetchone()[0]  # the default retention (3 years) stored one
        purged_before = conn.execute(purged).fetchone()[0]
    service = Service(db, workdir, args.audit_key, {"CUSTOMER_DATA_RETENTION_DAYS": str(args.retention)})
    try:
        service.wait_ready()
        cpu0 = tree_cpu(service.process.pid)
        began = time.monotonic()
        deadline = began + 1800
        done = False
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            while time.monotonic() < deadline:
                if conn.execute(watermarks).fetchone()[0] > stored_before:
                    done = True
                    break
                time.sleep(0.2)
            scrubbed = conn.execute(purged).fetchone()[0] - purged_before
        ended = time.monotonic()
        cpu = (tree_cpu(service.process.pid) - cpu0) * 1000
        return service.window(f"retention purge first pass ({args.retention} days)", began, ended, cpu,
                              f"{scrubbed:,} audited" if done else "NOT DONE in 30 min")
    finally:
        service.stop()


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "--probe-serve":
        rest = sys.argv[3:]
        return probe_serve(sys.argv[2], rest[1:] if rest[:1] == ["--"] else rest)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", type=Path, default=Path("/tmp/stall/100k.db"))
    parser.add_argument("--tickets", type=int, default=100_000, help="when building --base")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/stall/run"))
    parser.add_argument("--audit-key", default=os.environ.get("AUDIT_KEY") or AUDIT_KEY)
    parser.add_argument("--only", help="comma-separated words: run only the actions whose name has one")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--settle", type=float, default=0.5, help="seconds of quiet before each action")
    parser.add_argument("--retention", type=int, default=0, help="also the retention purge's first pass")
    parser.add_argument("--no-actions", action="store_true", help="only the retention pass")
    parser.add_argument("--out", type=Path, help="append the table (Markdown) to this file")
    args = parser.parse_args()
    base = prepare_base(args)
    args.workdir.mkdir(parents=True, exist_ok=True)
    run_dir = args.workdir / secrets.token_hex(3)
    run_dir.mkdir()
    db = copy_database(base, run_dir)
    head = (f"{base} ({base.stat().st_size / 2**20:,.0f} MiB, copied to {db}); {os.cpu_count()} CPUs; "
            f"load {load_avg()}; commit {git_head()}")
    print(head, flush=True)
    figures: list[Figure] = []
    try:
        if not args.no_actions:
            figures += asyncio.run(run_actions(args, db, run_dir))
        if args.retention:
            figures.append(retention_pass(args, db, run_dir))
    finally:
        lines = print_table(figures)
        over = [f for f in figures if f.worst_ms > LIMIT_MS]
        held = [f for f in figures if f.worst_cpu_ms > LIMIT_MS]
        summary = (f"{len(over)} of {len(figures)} actions saw the loop late > {LIMIT_MS:.0f} ms; in {len(held)} "
                   f"the loop thread itself worked > {LIMIT_MS:.0f} ms in one go (the rest: waiting for a core, "
                   "the interpreter lock or the collector on a loaded machine)")
        print(summary)
        if args.out:
            with args.out.open("a") as out:
                out.write("\n" + head + "\n\n" + "\n".join(lines) + "\n\n" + summary + "\n")
        for suffix in ("", "-wal", "-shm"):
            Path(str(db) + suffix).unlink(missing_ok=True)
    healthy = [f.health_p99_ms for f in figures if f.health_n]
    if healthy:
        print(f"(median of the actions' /healthz p99: {statistics.median(healthy):.0f} ms)")
    return 1 if held else 0


def git_head() -> str:
    try:
        return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=False).stdout.strip()
    except OSError:
        return "?"


if __name__ == "__main__":
    raise SystemExit(main())
