"""Intake benchmark, one for every door: unique fault reports through the real protocol of a door into
`ticketbot serve` (SQLite, one process), side by side with a bare aiohttp echo server in the same run.

    python bench/intake.py [--via playground wecom feishu dingtalk kf report-page api] [--duration 10]
                           [--connections 32] [--rate 0] [--drain 120] [--warm-up 200] [--startup]
                           [--database prefilled.db]
                           [--engine sqlite postgres postgres-redis] [--postgres ADMIN_URL]

Doors (`--via`, one or several; each gets a fresh service in an empty folder, the demo directory
loaded as on a local trial):
- playground: POST /playground/api/messages; its answer comes after the handling, so the answer is
  the acceptance, the processing and the delivery at once.
- wecom: encrypted, signed callbacks (wechatpy's own `WeChatCrypto.encrypt_message`, re-wrapped
  as WeCom POSTs them) to /wecom/callback; the service sends its replies to a fake WeCom API
  (tests/fakes/wecom_server.py: gettoken, message/send with WeCom's errcodes and per-user limit)
  in its own process.
- feishu: encrypted, signed event pushes (AES-256-CBC + X-Lark-Signature as Feishu sends them,
  built like tests/fakes/feishu_server.py) to /feishu/events; replies to the fake Feishu Open API.
- dingtalk: robot messages pushed as frames down the fake DingTalk stream gateway
  (tests/fakes/dingtalk_gateway.py, in this process) to the service's dingtalk-stream client; the
  ack is the acceptance; replies go to the gateway's robot batchSend.
- the customer doors (bench/intake_customer_doors.py, where each one's "accepted", "processed" and
  "answer delivered" are defined): kf (微信客服: the customer's message in the fake kf API's log, then
  WeCom's sealed kf_msg_or_event callback; the service pulls kf/sync_msg and answers through
  kf/send_msg), report-page (the form POST of /r/S01 as a browser sends it) and api (POST
  /api/v1/tickets with a registered client's token). A run with one of them and without the playground
  measures the playground first, for the ratio of CPU per ticket.

Every report comes from a new sender, so each is a new ticket. A ticket counts as processed only
when it is FULLY processed: its row is written (read back from the service's database afterwards)
AND the customer's answer reached the fake platform (the first message to that sender, stamped by
the fake). All times are wall-clock (`time.time()`), which every process on one machine shares.

Load: `--connections` clients, closed loop (each sends its next report when the last is
accepted) for `--duration` seconds; with `--rate R`, an open loop offering R reports/s (at most
`--connections` in flight). Then the service gets up to `--drain` seconds to finish the backlog.

Printed per door: accepted/s, processed/s while the load ran (fully processed ones), p50/p99 from
acceptance to processed (ticket row) and to the answer delivered, the service process's CPU time
per ticket (utime + stime of all its threads from /proc, warm-up excluded; robust on a shared
machine), the backlog (accepted, not fully processed) at 25/50/75/100 % of the load and how long
it took to drain. The echo row is the ceiling: the same requests answered by bare aiohttp.

`--startup` (playground only) also measures `ticketbot serve` start-up (median of three) and RSS.
Targets (issues 2 and 24): >= 500 tickets/s sustained on SQLite in one process with no growing
backlog on every door; a chat door's CPU per ticket within 1.5x the playground's; ready <= 2 s;
RSS <= 150 MB.

`--engine` (one or several, default sqlite): every door is measured on each engine in the same run —
sqlite (the above), postgres (one process), postgres-redis (PROCESS_INBOX=worker: one web + one worker
process, then two of each with the load alternating between the two web ports); see
bench/intake_engines.py. With an engine other than sqlite the run ends with a per-engine table: CPU ms
per ticket of all the deployment's processes and its ratio to SQLite's for the same door, SQL statements
and COMMITs per ticket (pg_stat_statements in a PostgreSQL cluster of the run's own), Redis commands per
ticket (INFO commandstats of a private redis-server) and EVALs per ticket (the alarm / hand-off scripts of
bot/jobs/arq_timers.py, one round trip each), and the database size. Target (issue 24):
PostgreSQL within 2x SQLite's CPU per ticket.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import multiprocessing as mp
import os
import re
import secrets
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: make `tests.fakes` importable

STARTS = 3
DOORS = ("playground", "wecom", "feishu", "dingtalk")
CUSTOMER_DOORS = ("kf", "report-page", "api")  # bench/intake_customer_doors.py
FAULT = "底盘有异响，开起来咣当咣当的"
WARM_UP = 200
# WeCom
WECOM_TOKEN = "bench-callback-token"
WECOM_AES_KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
# Feishu
FEISHU_KEY = "bench-encrypt-key"
FEISHU_TOKEN = "bench-verification-token"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# --- processes -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_s(pid: int) -> float:
    """utime + stime of the whole process (every thread), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def background_note(cpu: float, load: Load, fold_behind: int | None = None) -> str:
    """The service's worker processes' CPU (the report fold), not in "CPU ms/ticket", said beside it; and
    how far the fold was behind when the load stopped (postponed work would flatter the figures)."""
    note = f"its worker processes (report fold) {cpu / max(1, len(load.accepted)) * 1000:.2f} ms CPU/ticket more"
    if fold_behind is not None:
        note += f", {fold_behind} audit events not folded yet when the load stopped"
    return note


def wait_ready(url: str, timeout_s: float = 60, process: subprocess.Popen[bytes] | None = None) -> float:
    """Seconds until `url` answers 200; `process`: the service, whose exit (a bad setting, say) fails at
    once instead of after `timeout_s`."""
    import urllib.request

    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the service exited with {process.returncode} before {url} answered (see its log)")
        try:
            with urllib.request.urlopen(url, timeout=0.5) as resp:
                if resp.status == 200:
                    return time.monotonic() - start
        except OSError:
            time.sleep(0.01)
    raise RuntimeError(f"{url} not ready after {timeout_s} s")


@dataclass
class Service:
    process: subprocess.Popen[bytes]
    port: int
    workdir: Path

    @property
    def db(self) -> Path:
        return self.workdir / "bench.db"

    @property
    def ports(self) -> list[int]:
        return [self.port]

    def cpu(self) -> float:
        return cpu_s(self.process.pid)

    def background_cpu(self) -> float:
        from intake_engines import children_cpu_s

        return children_cpu_s(self.process.pid)

    def fold_behind(self) -> int | None:
        """Audit events the report fold has not folded yet (its state in the reports file beside the
        database, storage/report_store.py, or in the database itself for older trees)."""
        store = self.db.with_name(self.db.name + "-reports")
        try:
            with contextlib.closing(sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)) as service:
                top = service.execute("SELECT max(seq) FROM audit_events").fetchone()[0] or 0
                state = None if store.exists() else service.execute(
                    "SELECT seq, backfill_next_id FROM report_fold_state").fetchone()
            if store.exists():
                with contextlib.closing(sqlite3.connect(f"file:{store}?mode=ro", uri=True)) as reports:
                    state = reports.execute("SELECT seq, backfill_next_id FROM report_fold_state").fetchone()
        except sqlite3.Error:
            return None
        if state is None or state[1] is not None:
            return top  # not started, or still backfilling
        return max(0, top - int(state[0]))

    async def pending(self) -> int:
        return pending_rows(self.db)

    async def tickets(self, platform: str) -> dict[str, float]:
        return ticket_times(self.db, platform)

    async def counters(self) -> dict[str, int]:
        return {}

    async def size_mb(self) -> float:
        return sum(f.stat().st_size for f in self.workdir.glob("bench.db*")) / 2**20

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


def start_service(extra_env: dict[str, str] | None = None, database: Path | None = None) -> Service:
    """`ticketbot serve` in an empty folder, on SQLite; `extra_env` configures the door's platform."""
    workdir = Path(tempfile.mkdtemp(prefix="tb-bench-"))
    if database is not None:  # a prefilled database (bench/prefill_db.py), copied: the run changes it
        shutil.copyfile(database, workdir / "bench.db")
        reports = database.with_name(database.name + "-reports")  # its report aggregates (storage/report_store.py)
        if reports.exists():
            with contextlib.closing(sqlite3.connect(f"file:{reports}?mode=ro", uri=True)) as source, \
                    contextlib.closing(sqlite3.connect(workdir / "bench.db-reports")) as target:
                source.backup(target)
    dropped = ("REDIS_URL", "PYTHONDONTWRITEBYTECODE", "DATABASE_URL", "PROCESS_INBOX")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("WECOM_", "FEISHU_", "DINGTALK_")) and k not in dropped}
    env.update(DATABASE_URL=f"sqlite:///{workdir / 'bench.db'}", DATA_DIR=str(workdir), PLAYGROUND="on",
               PYTHONPATH=str(ROOT), **(extra_env or {}))
    port = free_port()
    log = open(workdir / "serve.log", "wb")  # noqa: SIM115  (kept open for the child's lifetime)
    process = subprocess.Popen([sys.executable, "-m", "bot.cli", "serve", "--port", str(port)], cwd=workdir,
                               env=env, stdout=log, stderr=subprocess.STDOUT)
    return Service(process, port, workdir)


def start_profiler(service: Service, folder: Path | None, door: str) -> subprocess.Popen[bytes] | None:
    """`--profile DIR`: py-spy samples the service (all threads) from the load's start until it has drained."""
    if folder is None:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    return subprocess.Popen([py_spy, "record", "--pid", str(service.process.pid), "--threads", "--rate", "200",
                             "--format", "raw", "--output", str(folder / f"{door}.txt")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop_profiler(profiler: subprocess.Popen[bytes] | None) -> None:
    if profiler is not None:
        profiler.send_signal(2)  # SIGINT: py-spy writes its output and exits
        profiler.wait(60)


# --- the fake platforms (WeCom and Feishu in their own process) --------------------------------


class Everyone:
    """The fake WeCom's member list: every bench sender is a member."""

    def __contains__(self, user: object) -> bool:
        return True


class Discard(list[Any]):
    """A fake's request log: a long run must not keep every request."""

    def append(self, item: Any) -> None:
        pass


class FirstDelivery(list[Any]):
    """Keeps, per recipient, when the first message to them was accepted by the fake platform."""

    def __init__(self, recipients: Callable[[Any], list[str]]) -> None:
        super().__init__()
        self.first: dict[str, float] = {}
        self._recipients = recipients

    def append(self, item: Any) -> None:
        now = time.time()
        for user in self._recipients(item):
            self.first.setdefault(user, now)


class FeishuMessages(dict[str, Any]):
    """FakeFeishu.messages that stamps the first message created for each receive_id."""

    def __init__(self) -> None:
        super().__init__()
        self.first: dict[str, float] = {}

    def __setitem__(self, key: str, value: Any) -> None:
        self.first.setdefault(str(value.get("receive_id")), time.time())
        super().__setitem__(key, {"receive_id": value.get("receive_id"), "msg_type": value.get("msg_type"),
                                  "content": "{}"})  # enough for a PATCH; a long run keeps no bodies


def serve_fake(door: str, ports: Any, stop: Any, results: Any) -> None:
    async def main() -> None:
        first: dict[str, float]
        if door == "wecom":
            from tests.fakes.wecom_server import FakeWeCom

            wecom = FakeWeCom(users=Everyone())  # type: ignore[arg-type]
            wecom.requests = Discard()
            recorder = FirstDelivery(lambda body: str(body.get("touser", "")).split("|"))
            wecom.delivered = recorder
            wecom.dropped = Discard()
            await wecom.start()
            ports.put({"url": wecom.base_url, "corp_id": wecom.corp_id, "agent_id": wecom.agent_id,
                       "secret": wecom.secret})
            first = recorder.first
        else:
            from tests.fakes.feishu_server import FakeFeishu

            feishu = FakeFeishu()
            feishu.requests = Discard()
            messages = FeishuMessages()
            feishu.messages = messages
            await feishu.start()
            ports.put({"url": feishu.url})
            first = messages.first
        while not stop.is_set():
            await asyncio.sleep(0.1)
        results.put(dict(first))

    asyncio.run(main())


# --- requests per door -------------------------------------------------------------------------


@dataclass
class Report:
    sender: str  # the external id the answer goes to
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    query: dict[str, str] = field(default_factory=dict)


_ENCRYPT = re.compile(r"<Encrypt><!\[CDATA\[(.*?)\]\]></Encrypt>.*<MsgSignature><!\[CDATA\[(.*?)\]\]>", re.S)


class WeComReports:
    """Callbacks as WeCom POSTs them, sealed with wechatpy's own WeChatCrypto (one instance, reused)."""

    def __init__(self, corp_id: str, agent_id: int) -> None:
        from wechatpy.enterprise.crypto import WeChatCrypto

        self._crypto = WeChatCrypto(WECOM_TOKEN, WECOM_AES_KEY, corp_id)
        self._corp_id, self._agent_id = corp_id, agent_id
        self._msg_ids = itertools.count(int(time.time()) * 1000)

    def __call__(self, sender: str) -> Report:
        from tests.fakes.wecom_server import text_xml

        ts, nonce = str(int(time.time())), str(secrets.randbelow(10**9))
        inner = text_xml(sender, FAULT, msg_id=next(self._msg_ids), created=int(ts), agent_id=self._agent_id)
        sealed = self._crypto.encrypt_message(inner, nonce, ts)
        found = _ENCRYPT.search(sealed)
        if found is None:  # not the envelope wechatpy writes
            raise RuntimeError(f"unexpected envelope {sealed[:200]!r}")
        encrypted, signature = found.groups()
        body = (f"<xml><ToUserName><![CDATA[{self._corp_id}]]></ToUserName>"
                f"<AgentID><![CDATA[{self._agent_id}]]></AgentID>"
                f"<Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>").encode()
        return Report(sender, body, {"Content-Type": "text/xml"},
                      {"msg_signature": signature, "timestamp": ts, "nonce": nonce})


def feishu_report(sender: str) -> Report:
    from tests.fakes.feishu_server import message_event, signed_event

    payload = message_event(FEISHU_TOKEN, content={"text": FAULT}, sender_open_id=sender,
                            event_id=f"ev-{sender}", message_id=f"om_{sender}")
    body, headers = signed_event(payload, FEISHU_KEY)
    return Report(sender, body, headers)


def playground_report(sender: str) -> Report:
    return Report(sender, json.dumps({"user": sender, "text": FAULT}, ensure_ascii=False).encode(),
                  {"Content-Type": "application/json"})


@dataclass
class HttpDoor:
    env: dict[str, str]  # the service's settings for the door's platform
    make: Callable[[str], Report]  # a unique fault report from a sender, as the platform sends it
    path: str
    platform: str  # the identities' platform of the door's senders


def http_door(door: str, fake: dict[str, Any]) -> HttpDoor:
    """How reports come in through `door` (playground, wecom, feishu); `fake`: what serve_fake put on its queue."""
    if door == "wecom":
        env = {"WECOM_CORP_ID": fake["corp_id"], "WECOM_AGENT_ID": str(fake["agent_id"]),
               "WECOM_SECRET": fake["secret"], "WECOM_TOKEN": WECOM_TOKEN, "WECOM_ENCODING_AES_KEY": WECOM_AES_KEY,
               "WECOM_API_BASE": fake["url"]}
        return HttpDoor(env, WeComReports(fake["corp_id"], fake["agent_id"]), "/wecom/callback", "wecom")
    if door == "feishu":
        from tests.fakes.feishu_server import APP_ID, APP_SECRET

        env = {"FEISHU_APP_ID": APP_ID, "FEISHU_APP_SECRET": APP_SECRET, "FEISHU_ENCRYPT_KEY": FEISHU_KEY,
               "FEISHU_VERIFICATION_TOKEN": FEISHU_TOKEN, "FEISHU_DOMAIN": fake["url"]}
        return HttpDoor(env, feishu_report, "/feishu/events", "feishu")
    return HttpDoor({}, playground_report, "/playground/api/messages", "local")


# --- load ----------------------------------------------------------------------------------------


@dataclass
class Load:
    accepted: dict[str, float] = field(default_factory=dict)  # sender -> acceptance time
    failed: int = 0
    started: float = 0.0
    stopped: float = 0.0


async def run_load(send: Callable[[Report], Any], make: Callable[[str], Report], prefix: str, *, duration: float,
                   connections: int, rate: float, load: Load, count: int | None = None) -> None:
    """Closed loop (`rate` 0) or open loop at `rate`; stops after `duration` s (or `count` reports)."""
    numbers = itertools.count()
    load.started = time.time()
    deadline = load.started + duration

    async def one(i: int) -> None:
        report = make(f"{prefix}{i}")
        try:
            ok = await send(report)
        except (aiohttp.ClientError, TimeoutError):
            ok = False
        if ok:
            load.accepted[report.sender] = time.time()
        else:
            load.failed += 1

    def more() -> int | None:
        i = next(numbers)
        return i if time.time() < deadline and (count is None or i < count) else None

    if rate <= 0:
        async def client() -> None:
            while (i := more()) is not None:
                await one(i)

        await asyncio.gather(*(client() for _ in range(connections)))
    else:
        slots = asyncio.Semaphore(connections)
        tasks: set[asyncio.Task[None]] = set()

        async def paced(i: int) -> None:
            try:
                await one(i)
            finally:
                slots.release()

        while (i := more()) is not None:
            delay = load.started + i / rate - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            await slots.acquire()
            task = asyncio.create_task(paced(i))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.gather(*tasks)
    load.stopped = time.time()


def http_sender(session: aiohttp.ClientSession, url: str) -> Callable[[Report], Any]:
    async def send(report: Report) -> bool:
        async with session.post(url, params=report.query, data=report.body, headers=report.headers) as resp:
            await resp.read()
            return resp.status == 200

    return send


def spread_sender(session: aiohttp.ClientSession, urls: list[str]) -> Callable[[Report], Any]:
    """Reports alternate between the web processes' ports (one port: the same as http_sender)."""
    senders = itertools.cycle([http_sender(session, url) for url in urls])
    return lambda report: next(senders)(report)


# --- one door ------------------------------------------------------------------------------------


@dataclass
class Figures:
    door: str
    accepted_rate: float
    processed_rate: float = float("nan")
    to_processed: tuple[float, float] = (float("nan"), float("nan"))
    to_answer: tuple[float, float] = (float("nan"), float("nan"))
    cpu_ms: float = float("nan")
    backlog: list[int] = field(default_factory=list)
    drained_s: float = float("nan")
    accepted: int = 0
    processed: int = 0
    failed: int = 0
    note: str = ""
    engine: str = "sqlite"
    per_ticket: dict[str, float] = field(default_factory=dict)  # statements, commits, redis (other engines)
    size_mb: float = float("nan")


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))] * 1000


def ticket_times(db: Path, platform: str) -> dict[str, float]:
    """external sender id -> when their ticket row was written (created_at), from the service's database."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as conn:
        rows = conn.execute("SELECT i.external_id, t.created_at FROM tickets t JOIN identities i "
                            "ON i.person_id = t.customer_id AND i.platform = ?", (platform,)).fetchall()
    times = {}
    for external_id, created in rows:
        at = datetime.fromisoformat(str(created))
        times[str(external_id)] = (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp()
    return times


def pending_rows(db: Path) -> int:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as conn:
        inbox = conn.execute("SELECT count(*) FROM inbox WHERE status IN ('pending', 'processing')").fetchone()[0]
        outbox = conn.execute("SELECT count(*) FROM outbox WHERE status IN ('pending', 'sending') "
                              "AND channel != 'local'").fetchone()[0]
    return int(inbox) + int(outbox)


def summarise(door: str, load: Load, processed_at: dict[str, float], answered_at: dict[str, float],
              cpu: float, drained_s: float) -> Figures:
    duration = load.stopped - load.started
    full: dict[str, float] = {}
    to_processed, to_answer = [], []
    for sender, accepted in load.accepted.items():
        if sender in processed_at and sender in answered_at:
            full[sender] = max(processed_at[sender], answered_at[sender])
            to_processed.append(max(0.0, processed_at[sender] - accepted))
            to_answer.append(max(0.0, answered_at[sender] - accepted))
    marks = [load.started + duration * q for q in (0.25, 0.5, 0.75, 1.0)]
    accepted_times = sorted(load.accepted.values())
    full_times = sorted(full.values())
    backlog = [sum(1 for t in accepted_times if t <= m) - sum(1 for t in full_times if t <= m) for m in marks]
    in_load = sum(1 for t in full_times if t <= load.stopped)
    return Figures(door, len(load.accepted) / duration, in_load / duration,
                   (pct(to_processed, 50), pct(to_processed, 99)), (pct(to_answer, 50), pct(to_answer, 99)),
                   cpu / len(full) * 1000 if full else float("nan"), backlog, drained_s, len(load.accepted),
                   len(full), load.failed)


async def wait_drained(load: Load, count_done: Callable[[], Any], drain: float) -> float:
    """Seconds from the end of the load until every accepted report is fully processed (nan: not within `drain`)."""
    while time.time() - load.stopped < drain:
        if await count_done() >= len(load.accepted):
            return time.time() - load.stopped
        await asyncio.sleep(0.25)
    return float("nan")


def options(args: argparse.Namespace) -> argparse.Namespace:
    """`args` with this script's defaults for what a caller's own parser lacks (bench/api_v1_bench.py
    passes its namespace to measure_http_door)."""
    defaults = {"database": None, "rate": 0.0, "drain": 120.0, "profile": None, "duration": 10.0, "connections": 32,
                "setup": None, "pg_server": None, "warm_up": WARM_UP}
    return argparse.Namespace(**{**defaults, **vars(args)})


async def deploy(args: argparse.Namespace, env: dict[str, str]) -> Any:
    """The service under test: `ticketbot serve` on SQLite, or (args.setup) a PostgreSQL deployment."""
    if args.setup is None:
        service = start_service(env, args.database)
        await asyncio.to_thread(wait_ready, f"http://127.0.0.1:{service.port}/healthz", 60, service.process)
        return service
    from intake_engines import start_deployment

    return await start_deployment(args.setup, args.pg_server, env, wait_ready)


async def undeploy(service: Any) -> None:
    if isinstance(service, Service):
        service.stop()
        shutil.rmtree(service.workdir, ignore_errors=True)
    else:
        from intake_engines import end_deployment

        await end_deployment(service)


def per_ticket(before: dict[str, int], after: dict[str, int], tickets: int) -> dict[str, float]:
    return {k: (after[k] - before[k]) / tickets for k in after} if tickets else {}


async def measure_http_door(door: str, args: argparse.Namespace) -> Figures:
    args = options(args)
    ctx = mp.get_context("spawn")
    fake_proc = None
    stop, results, ports = ctx.Event(), ctx.Queue(), ctx.Queue()
    fake: dict[str, Any] = {}
    if door in ("wecom", "feishu"):
        fake_proc = ctx.Process(target=serve_fake, args=(door, ports, stop, results), daemon=True)
        fake_proc.start()
        fake = ports.get(timeout=60)
    door_in = http_door(door, fake)
    env, make, path, platform = door_in.env, door_in.make, door_in.path, door_in.platform
    service: Any = None
    try:
        service = await deploy(args, env)
        urls = [f"http://127.0.0.1:{port}{path}" for port in service.ports]
        run_id = secrets.token_hex(3)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            send = spread_sender(session, urls)
            warm = Load()
            await run_load(send, make, f"ou_warm{run_id}_", duration=120, connections=4, rate=0, load=warm,
                           count=args.warm_up)
            await asyncio.sleep(1)
            while await service.pending():  # the warm-up fully processed before the clock starts
                await asyncio.sleep(0.25)
            counts_before = await service.counters()
            cpu_before, background_before = service.cpu(), service.background_cpu()
            profiler = start_profiler(service, args.profile, door)
            load = Load()
            await run_load(send, make, f"ou_b{run_id}_", duration=args.duration, connections=args.connections,
                           rate=args.rate, load=load)
            fold_behind = getattr(service, "fold_behind", lambda: None)()
        if door == "playground":  # the answer is the acceptance: handled, finished and read back
            drained = 0.0
        else:
            async def done() -> int:
                return len(load.accepted) - await service.pending()

            drained = await wait_drained(load, done, args.drain)
            await asyncio.sleep(0.5)  # the last sends' stamps
        cpu, background = service.cpu() - cpu_before, service.background_cpu() - background_before
        counts_after = await service.counters()
        stop_profiler(profiler)
        busy_rss = rss_mb(service.process.pid)
        if door == "playground":
            processed = answered = load.accepted
        else:
            stop.set()
            answered = results.get(timeout=120)
            processed = await service.tickets(platform)
        figures = summarise(door, load, processed, answered, cpu, drained)
        figures.note = f"RSS after load {busy_rss:.0f} MB; {background_note(background, load, fold_behind)}"
        return await engine_figures(figures, args, service, counts_before, counts_after)
    finally:
        stop.set()
        if service is not None:
            await undeploy(service)
        if fake_proc is not None:
            fake_proc.join(timeout=10)
            if fake_proc.is_alive():
                fake_proc.terminate()


async def engine_figures(figures: Figures, args: argparse.Namespace, service: Any, before: dict[str, int],
                         after: dict[str, int]) -> Figures:
    figures.engine = args.setup.label if args.setup is not None else "sqlite"
    figures.per_ticket = per_ticket(before, after, figures.processed)
    figures.size_mb = await service.size_mb()
    return figures


class DingTalkDoor:
    """Robot messages pushed as frames down the fake DingTalk stream gateway (in this process, so the
    caller's event loop must keep running) to the service's dingtalk-stream client; the ack is the
    acceptance, replies arrive at the gateway's robot batchSend (`first`: the first one per user)."""

    def __init__(self) -> None:
        from tests.fakes.dingtalk_gateway import FakeDingTalkGateway

        self.gateway = FakeDingTalkGateway()
        self._waiting: dict[str, asyncio.Future[bool]] = {}
        self._frame_ids = itertools.count()
        self._recorder = FirstDelivery(lambda recorded: list(recorded.body.get("userIds") or []))

    async def start(self) -> dict[str, str]:
        """The gateway up; the service's settings for it."""
        gateway = self.gateway
        await gateway.start()
        gateway.requests = Discard()
        gateway.delivered = self._recorder
        gateway.acks = Discard()
        gateway.ack_observers.append(self._on_ack)
        return {"DINGTALK_CLIENT_ID": "bench-app", "DINGTALK_CLIENT_SECRET": "bench-secret",
                "DINGTALK_OPENAPI_ENDPOINT": gateway.base_url}

    @property
    def first(self) -> dict[str, float]:
        return self._recorder.first

    async def _on_ack(self, ack: dict[str, Any]) -> None:
        future = self._waiting.pop(ack.get("headers", {}).get("messageId", ""), None)
        if future is not None and not future.done():
            future.set_result(str(ack.get("code")) == "200")

    def make(self, sender: str) -> Report:
        from tests.fakes.dingtalk_gateway import TOPIC_ROBOT, callback_frame, robot_message

        data = robot_message(msg_id=f"m-{sender}", sender=sender, text=FAULT)
        return Report(sender, json.dumps(callback_frame(TOPIC_ROBOT, data, f"f-{next(self._frame_ids)}-{sender}"),
                                         ensure_ascii=False).encode())

    async def send(self, report: Report) -> bool:
        frame = json.loads(report.body)
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting[frame["headers"]["messageId"]] = future
        await self.gateway.push(frame)
        try:
            return await asyncio.wait_for(future, 30)
        finally:
            self._waiting.pop(frame["headers"]["messageId"], None)

    async def close(self) -> None:
        await self.gateway.close()


async def measure_dingtalk(args: argparse.Namespace) -> Figures:
    args = options(args)
    door = DingTalkDoor()
    env = await door.start()
    service: Any = None
    try:
        service = await deploy(args, env)
        await door.gateway.wait_connections(len(service.ports), timeout=60)
        run_id = secrets.token_hex(3)
        warm = Load()
        await run_load(door.send, door.make, f"dwarm{run_id}_", duration=120, connections=4, rate=0, load=warm,
                       count=args.warm_up)
        await asyncio.sleep(1)
        while await service.pending():
            await asyncio.sleep(0.25)
        counts_before = await service.counters()
        cpu_before, background_before = service.cpu(), service.background_cpu()
        profiler = start_profiler(service, args.profile, "dingtalk")
        load = Load()
        await run_load(door.send, door.make, f"db{run_id}_", duration=args.duration, connections=args.connections,
                       rate=args.rate, load=load)
        fold_behind = getattr(service, "fold_behind", lambda: None)()

        async def done() -> int:
            return len(load.accepted) - await service.pending()

        drained = await wait_drained(load, done, args.drain)
        await asyncio.sleep(0.5)
        cpu, background = service.cpu() - cpu_before, service.background_cpu() - background_before
        counts_after = await service.counters()
        stop_profiler(profiler)
        busy_rss = rss_mb(service.process.pid)
        figures = summarise("dingtalk", load, await service.tickets("dingtalk"), door.first, cpu, drained)
        figures.note = f"RSS after load {busy_rss:.0f} MB; {background_note(background, load, fold_behind)}"
        return await engine_figures(figures, args, service, counts_before, counts_after)
    finally:
        if service is not None:
            await undeploy(service)
        await door.close()


async def measure_echo(door: str, args: argparse.Namespace) -> Figures:
    """The ceiling: the door's own requests (WeCom-sealed callbacks for wecom, …) answered by bare aiohttp."""
    port = free_port()
    echo = subprocess.Popen([sys.executable, str(ROOT / "bench" / "echo_server.py"), str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(f"http://127.0.0.1:{port}/healthz", process=echo)
        makers: dict[str, Callable[[str], Report]] = {"wecom": WeComReports("ww-test-corp", 1000002),
                                                      "feishu": feishu_report}
        make = makers.get(door, playground_report)
        if door in CUSTOMER_DOORS:
            from intake_customer_doors import echo_maker

            make = echo_maker(door)
        cpu_before = cpu_s(echo.pid)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            load = Load()
            await run_load(http_sender(session, f"http://127.0.0.1:{port}/x"), make, "echo", duration=args.duration,
                           connections=args.connections, rate=args.rate, load=load)
        cpu = cpu_s(echo.pid) - cpu_before
        figures = Figures("echo", len(load.accepted) / (load.stopped - load.started), accepted=len(load.accepted),
                          failed=load.failed)
        figures.cpu_ms = cpu / max(1, len(load.accepted)) * 1000
        figures.note = f"({door}'s requests)"
        return figures
    finally:
        echo.terminate()
        echo.wait(10)


# --- start-up (playground) --------------------------------------------------------------------


def settled_rss_mb(pid: int, *, at_least_s: float = 10.0, at_most_s: float = 60.0) -> float:
    """RSS once the idle service has settled: the background jieba warm-up takes 1-3 s on a quiet machine and
    much longer on a loaded one, so a fixed 3 s read under-reported (124-145 MB for services settling at
    157-166). At least `at_least_s` after ready, then until two reads a second apart agree within 0.5 MB."""
    time.sleep(at_least_s)
    deadline = time.monotonic() + at_most_s
    last = rss_mb(pid)
    while time.monotonic() < deadline:
        time.sleep(1.0)
        now = rss_mb(pid)
        if abs(now - last) < 0.5:
            return now
        last = now
    return last


def measure_startup(database: Path | None) -> str:
    ready_times: list[float] = []
    idle_rss = float("nan")
    for i in range(STARTS):
        service = start_service(database=database)
        try:
            ready_times.append(wait_ready(f"http://127.0.0.1:{service.port}/healthz", process=service.process))
            if i == STARTS - 1:
                idle_rss = settled_rss_mb(service.process.pid)
        finally:
            service.stop()
            shutil.rmtree(service.workdir, ignore_errors=True)
    return (f"ticketbot serve ready in {statistics.median(ready_times):.2f} s, median of {STARTS} starts "
            f"({', '.join(f'{t:.2f}' for t in ready_times)}; target <= 2 s); RSS idle {idle_rss:.0f} MB "
            f"(target <= 150 MB)")


# --- report ---------------------------------------------------------------------------------------


def print_table(rows: list[Figures], args: argparse.Namespace, engine: Any = None) -> None:
    load = f"open loop at {args.rate:g}/s (<= {args.connections} in flight)" if args.rate > 0 else \
        f"closed loop, {args.connections} connections"
    db = f"prefilled copy of {args.database}" if args.database else "empty"
    where = "SQLite ({db} database), one service process" if engine is None else \
        (f"PostgreSQL (empty database; the service connects over "
         f"{'its Unix socket' if getattr(args, 'pg_socket', False) else 'loopback TCP'}), {engine.webs} web process(es)"
         + (f" + {engine.workers} worker(s), PROCESS_INBOX=worker, Redis" if engine.workers else ""))
    print(f"{where.format(db=db)}, {os.cpu_count()} CPUs; {load}; {args.duration:g} s of load, "
          f"then up to {args.drain:g} s to drain. 'processed' = ticket row written AND the customer's answer "
          f"delivered to the fake platform.")
    head = (f"{'door':<11}{'accepted/s':>11}{'processed/s':>12}{'→processed p50/p99 ms':>24}"
            f"{'→answer p50/p99 ms':>22}{'CPU ms/ticket':>14}  {'backlog at 25/50/75/100 %':<26}{'drained':>9}")
    print(head)
    for f in rows:
        if f.door == "echo":
            print(f"{'echo':<11}{f.accepted_rate:>11.0f}{'—':>12}{'—':>24}{'—':>22}{f.cpu_ms:>14.2f}  "
                  f"{'—':<26}{'—':>9}  {f.note}")
            continue
        backlog = "/".join(str(b) for b in f.backlog)
        drained = f"{f.drained_s:.1f} s" if f.drained_s == f.drained_s else f"> {args.drain:g} s"
        print(f"{f.door:<11}{f.accepted_rate:>11.0f}{f.processed_rate:>12.0f}"
              f"{f'{f.to_processed[0]:.0f} / {f.to_processed[1]:.0f}':>24}"
              f"{f'{f.to_answer[0]:.0f} / {f.to_answer[1]:.0f}':>22}{f.cpu_ms:>14.2f}  {backlog:<26}{drained:>9}  "
              f"{f.accepted} accepted, {f.processed} fully processed" + (f", {f.failed} not accepted" if f.failed
                                                                         else "") + f"; {f.note}")
    base = next((f for f in rows if f.door == "playground"), None)
    for f in rows:
        if f.door in ("echo", "playground"):
            continue
        verdict = "met" if f.processed_rate >= 500 and f.backlog and f.backlog[-1] <= max(f.backlog[0], 50) else \
            "NOT met"
        ratio = f", CPU {f.cpu_ms / base.cpu_ms:.2f}x the playground's (target <= 1.5x)" if base else ""
        if f.door in ("report-page", "api"):  # not chat doors: issue 24 sets these targets for the chat doors
            ratio += " (the chat doors' targets" + ("; API v1's own: >= 300/s, issue 23)" if f.door == "api" else ")")
        print(f"{f.door}: >= 500 tickets/s with no growing backlog: {verdict}{ratio}")


def print_engines(rows: list[Figures]) -> None:
    """Per engine and door: CPU of all the deployment's processes, its ratio to SQLite's, round trips."""
    print("\nEngines (CPU ms/ticket: every process of the deployment, warm-up excluded; statements and COMMITs "
          "per ticket from pg_stat_statements, BEGIN/SAVEPOINT included; Redis: commands per ticket, the workers' "
          "polling and scripts' own commands included; EVAL: alarm / hand-off scripts, one round trip each):")
    print(f"{'engine':<17}{'door':<11}{'processed/s':>12}{'CPU ms/ticket':>14}{'vs SQLite':>10}{'statements':>11}"
          f"{'COMMITs':>9}{'Redis':>7}{'EVAL':>6}{'DB MiB':>8}")
    sqlite = {f.door: f for f in rows if f.engine == "sqlite" and f.door != "echo"}
    for f in rows:
        if f.door == "echo":
            continue
        base = sqlite.get(f.door)
        ratio = f"{f.cpu_ms / base.cpu_ms:.2f}x" if base is not None else "—"
        counts = [f"{f.per_ticket[k]:.1f}" if f.per_ticket.get(k) else "—"
                  for k in ("statements", "commits", "redis", "evals")]
        print(f"{f.engine:<17}{f.door:<11}{f.processed_rate:>12.0f}{f.cpu_ms:>14.2f}{ratio:>10}{counts[0]:>11}"
              f"{counts[1]:>9}{counts[2]:>7}{counts[3]:>6}{f.size_mb:>8.1f}")
    for f in rows:
        base = sqlite.get(f.door)
        if f.engine.startswith("postgres") and base is not None and f.door != "echo":
            verdict = "met" if f.cpu_ms <= 2 * base.cpu_ms else "NOT met"
            print(f"{f.engine} {f.door}: CPU per ticket within 2x SQLite's: {verdict}")


async def measure_doors(args: argparse.Namespace, rows: list[Figures], echo: bool) -> None:
    for door in args.via:
        if echo:  # one ceiling per run, with the first door's requests (the first asked for, see main)
            rows.append(await measure_echo(getattr(args, "echo_door", None) or door, args))
            echo = False
        if door == "dingtalk":
            rows.append(await measure_dingtalk(args))
        elif door in CUSTOMER_DOORS:
            from intake_customer_doors import measure_customer_door

            rows.append(await measure_customer_door(door, args))
        else:
            rows.append(await measure_http_door(door, args))


async def run(args: argparse.Namespace) -> None:
    rows: list[Figures] = []
    engines = getattr(args, "engine", None) or ["sqlite"]
    if "sqlite" in engines:
        await measure_doors(args, rows, echo=True)
        print_table(rows, args)
    if engines == ["sqlite"]:
        return
    from intake_engines import PostgresServer, setups

    server = PostgresServer(args.postgres, socket=args.pg_socket)
    await server.start()
    try:
        for setup in setups(engines):
            engine_rows: list[Figures] = []
            await measure_doors(argparse.Namespace(**{**vars(args), "setup": setup, "pg_server": server}),
                                engine_rows, echo=not rows)
            print(f"\n{setup.label}:")
            print_table(engine_rows, args, engine=setup)
            rows += engine_rows
    finally:
        server.stop()
    print_engines(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--via", nargs="+", choices=DOORS + CUSTOMER_DOORS, default=["playground"],
                        help="door(s), in this order")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of load per door (target run: 60)")
    parser.add_argument("--connections", type=int, default=32, help="clients / reports in flight")
    parser.add_argument("--rate", type=float, default=0.0, help="offered reports/s (open loop); 0: closed loop")
    parser.add_argument("--drain", type=float, default=120.0, help="seconds the service gets to finish the backlog")
    parser.add_argument("--database", type=Path, default=None, help="a prefilled SQLite database to copy")
    parser.add_argument("--profile", type=Path, default=None,
                        help="folder: py-spy records each service during load and drain (<door>.txt, collapsed stacks)")
    parser.add_argument("--warm-up", type=int, default=WARM_UP, help="reports sent before the clock starts")
    parser.add_argument("--startup", action="store_true", help="also measure start-up time and idle RSS")
    parser.add_argument("--engine", nargs="+", choices=("sqlite", "postgres", "postgres-redis"), default=["sqlite"],
                        help="engine(s), each measured on every door (see bench/intake_engines.py)")
    parser.add_argument("--postgres", default=None,
                        help="admin URL of a PostgreSQL server to use (default: a private cluster for the run)")
    parser.add_argument("--pg-socket", action="store_true",
                        help="the service connects to the private cluster through its Unix socket, not loopback TCP "
                             "(PostgreSQL on the same host)")
    args = parser.parse_args()
    if args.pg_socket and args.postgres:
        parser.error("--pg-socket needs the private cluster (its socket folder is known), not --postgres")
    args.echo_door = args.via[0]
    if set(args.via) & set(CUSTOMER_DOORS) and "playground" not in args.via:
        args.via = ["playground", *args.via]  # the customer doors' CPU per ticket is read against it
    if args.startup:
        print(measure_startup(args.database))
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
