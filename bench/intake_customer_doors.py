"""The customer doors of bench/intake.py (issue 24): 微信客服 (`kf`), the store report page (`report-page`) and
API v1 (`api`). Each drives unique fault reports through the door's real protocol into `ticketbot serve`
and counts only FULLY processed tickets; the figures are those of the other doors (bench/intake.py).

- kf: a WeChat user's message is put in the fake 微信客服 API's message log (tests/fakes/wecom_kf_server.py,
  the fake the tests use, in a process of its own: WeCom is remote), then WeCom's kf_msg_or_event
  callback for the account — carrying a fresh sync Token, sealed and signed with wechatpy's own
  `WeChatCrypto.encrypt_message`, re-wrapped as WeCom POSTs it — goes to /wecom/callback. Accepted: the
  callback answered 200 (the service then pulls kf/sync_msg from its saved cursor, one sync per account
  at a time, coalescing callbacks). Processed: the ticket row of identity `wecom_kf` `<open_kfid>:<user>`.
  Answer delivered: the first kf/send_msg to that user carrying "已为您创建工单 <number>" accepted by the
  fake (errcode 0, the 5-in-48-h rule enforced), stamped by the fake.
- report-page: the browser's POST of the form at /r/S01 (the demo directory's store), multipart/form-data
  exactly as the page's form sends it (phone, subject, description, the empty file input `photo`,
  lat/lng, address, the honeypot `website` left empty, action=submit). In the default configuration
  (no SMS) the page needs no code, token or CSRF field: the POST is the whole protocol. Every report has
  its own phone, so its own new customer. The service keeps its default configuration, the per-address
  limit REPORT_PAGE_LIMIT_PER_IP_HOUR (20 an hour) included: as customers' phones do, the reports come
  from many addresses — the bench binds its client sockets to 127.1.x.y, a new loopback address for every
  PER_ADDRESS reports (each address's connections closed once its reports are answered).
  Accepted and answer delivered: the 200 answer page carrying the ticket number and the tracking link
  (查看工单进度) — the customer's answer. Processed: that ticket number's row read back from the database.
- api: POST /api/v1/tickets with `Authorization: Bearer <token>` of a client registered with
  `ticketbot api-client add` in the service's folder (API v1 authenticates with that token: there is no
  request signing), an Idempotency-Key, a new customer phone and external_ref per report.
  API_RATE_LIMIT_PER_MINUTE (600 a minute per client) is lifted for the run, as bench/api_v1_bench.py
  does. Accepted and answer delivered: the 201 with the ticket (its number); processed: that row read back.

For report-page and api the answer comes after the handling (as the playground's does), so there is no
backlog by construction; their p50/p99 are measured from when the request was SENT (the customer pressing
提交 / the system's call) to the ticket row's created_at (→processed) and to the answer received (→answer),
not from the answer itself (which would be zero, as the playground row shows).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import multiprocessing as mp
import os
import re
import secrets
import sqlite3
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
import intake as base  # bench/ is on sys.path: intake.py is the entry point

CUSTOMER_DOORS = base.CUSTOMER_DOORS
KF_ACCOUNT = "wkSTORE0001"
REPORT_STORE = "S01"  # the demo directory's store (loaded as on a local trial)
LIFTED = "100000000"  # a per-client limit nobody reaches in a run
PER_ADDRESS = 10  # report-page reports per client address: half the page's default hourly limit per address
_NUMBER = re.compile(r'id="ticket-number">([^<]+)<')
_TRACKING = re.compile(r'id="tracking-link" href="[^"]+/t/')


# --- the fake 微信客服 API, in its own process -------------------------------------------------------


def serve_kf_fake(ports: Any, stop: Any, results: Any) -> None:
    """FakeWeComKf with two bench routes: POST /bench/say (a customer's message into the account's log;
    answers the sync Token WeCom's callback would carry) and GET /bench/answered?prefix= (how many of
    those users got an answer)."""
    from aiohttp import web

    from tests.fakes.wecom_kf_server import FakeWeComKf

    async def main() -> None:
        fake = FakeWeComKf(per_user_per_minute=None)
        fake.requests = base.Discard()
        fake.sync_calls = base.Discard()
        recorder = base.FirstDelivery(kf_ticket_answer)
        fake.kf_sent = recorder

        def routes(app: web.Application) -> None:
            async def say(request: web.Request) -> web.Response:
                body = await request.json()
                fake.customer_message(KF_ACCOUNT, str(body["user"]), "text", {"content": str(body["text"])})
                return web.json_response({"token": fake.issue_sync_token()})

            async def answered(request: web.Request) -> web.Response:
                prefix = request.query.get("prefix", "")
                return web.json_response({"count": sum(1 for u in recorder.first if u.startswith(prefix))})

            app.router.add_post("/bench/say", say)
            app.router.add_get("/bench/answered", answered)

        fake.extra_routes.append(routes)
        await fake.start()
        ports.put({"url": fake.base_url, "corp_id": fake.corp_id, "kf_secret": fake.kf_secret})
        while not stop.is_set():
            await asyncio.sleep(0.1)
        results.put(dict(recorder.first))
        await fake.close()

    asyncio.run(main())


def kf_ticket_answer(body: dict[str, Any]) -> list[str]:
    """The recipient of a kf/send_msg body when it is the ticket's answer (已为您创建工单 …), else none."""
    text = str((body.get("text") or {}).get("content") or (body.get("msgmenu") or {}).get("head_content") or "")
    return [str(body.get("touser", ""))] if "已为您创建工单" in text else []


class KfCallbacks:
    """WeCom's kf_msg_or_event callbacks, sealed with wechatpy's own WeChatCrypto (one instance, reused)."""

    def __init__(self, corp_id: str) -> None:
        from wechatpy.enterprise.crypto import WeChatCrypto

        self._crypto = WeChatCrypto(base.WECOM_TOKEN, base.WECOM_AES_KEY, corp_id)
        self._corp_id = corp_id

    def seal(self, sender: str, sync_token: str) -> base.Report:
        from tests.fakes.wecom_server import _xml

        ts, nonce = str(int(time.time())), str(secrets.randbelow(10**9))
        inner = _xml({"ToUserName": self._corp_id, "CreateTime": int(ts), "MsgType": "event",
                      "Event": "kf_msg_or_event", "Token": sync_token, "OpenKfId": KF_ACCOUNT})
        found = base._ENCRYPT.search(self._crypto.encrypt_message(inner, nonce, ts))
        if found is None:  # not the envelope wechatpy writes
            raise RuntimeError("unexpected envelope from wechatpy")
        encrypted, signature = found.groups()
        # WeCom's kf callback carries no AgentID (the fake's callback_xml neither)
        body = (f"<xml><ToUserName><![CDATA[{self._corp_id}]]></ToUserName>"
                f"<Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>").encode()
        return base.Report(sender, body, {"Content-Type": "text/xml"},
                           {"msg_signature": signature, "timestamp": ts, "nonce": nonce})

    def __call__(self, sender: str) -> base.Report:
        """For the echo ceiling: the same callback with a token of the fake's shape."""
        return self.seal(sender, "ENC" + secrets.token_urlsafe(24))


# --- the report page and API v1 requests ------------------------------------------------------------


class Phones:
    """A new mainland mobile per report (a new customer each), unique within a run."""

    def __init__(self) -> None:
        self._numbers = itertools.count(secrets.randbelow(10_000_000) * 10)

    def __call__(self) -> str:
        return f"139{next(self._numbers) % 100_000_000:08d}"


class ReportPageForms:
    """The form's POST as a browser sends it (multipart/form-data, the empty file input included)."""

    def __init__(self) -> None:
        self.phones = Phones()

    def __call__(self, sender: str) -> base.Report:
        boundary = "----WebKitFormBoundary" + secrets.token_hex(8)
        fields = {"phone": self.phones(), "subject": "", "description": base.FAULT, "lat": "", "lng": "",
                  "address": "", "website": "", "action": "submit"}  # in the form's order, the photo after
        parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
                 for name, value in fields.items()]
        parts.insert(3, f'--{boundary}\r\nContent-Disposition: form-data; name="photo"; filename=""\r\n'
                        "Content-Type: application/octet-stream\r\n\r\n\r\n")  # no photo chosen
        body = ("".join(parts) + f"--{boundary}--\r\n").encode()
        return base.Report(sender, body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})


class ApiRequests:
    """POST /api/v1/tickets bodies: a new customer phone, external_ref and Idempotency-Key per report."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.phones = Phones()

    def __call__(self, sender: str) -> base.Report:
        body = {"description": base.FAULT, "customer": {"phone": self.phones()}, "external_ref": sender}
        return base.Report(sender, json.dumps(body, ensure_ascii=False).encode(), {
            "Content-Type": "application/json", "Authorization": f"Bearer {self.token}", "Idempotency-Key": sender})


def echo_maker(door: str) -> Callable[[str], base.Report]:
    """The door's own requests for the echo ceiling (no service: a placeholder token/corp id)."""
    if door == "kf":
        return KfCallbacks("ww-test-corp")
    if door == "report-page":
        return ReportPageForms()
    return ApiRequests("tb_" + secrets.token_urlsafe(32))


def register_api_client(service: Any) -> str:
    """`ticketbot api-client add bench` in the service's folder, against its database (as an admin does)."""
    env = dict(service.env) if hasattr(service, "env") else {
        **os.environ, "DATABASE_URL": f"sqlite:///{service.db}", "DATA_DIR": str(service.workdir),
        "PYTHONPATH": str(base.ROOT)}
    done = subprocess.run([sys.executable, "-m", "bot.cli", "api-client", "add", f"bench{secrets.token_hex(3)}",
                           "--scopes", "tickets:write,tickets:read"], cwd=service.workdir, env=env,
                          capture_output=True, text=True, check=True, timeout=120)
    return str(json.loads(done.stdout)["token"])


async def ticket_rows(service: Any) -> dict[str, float]:
    """ticket number -> created_at (epoch s), read back from the service's database (SQLite or PostgreSQL)."""
    if isinstance(service, base.Service):
        with sqlite3.connect(f"file:{service.db}?mode=ro", uri=True, timeout=30) as conn:
            rows = conn.execute("SELECT number, created_at FROM tickets").fetchall()
    else:
        rows = await (await service._read()).fetch("SELECT number, created_at FROM tickets")
    out = {}
    for number, created in rows:
        at = created if isinstance(created, datetime) else datetime.fromisoformat(str(created))
        out[str(number)] = (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp()
    return out


# --- one door -------------------------------------------------------------------------------------


@dataclass
class Door:
    """What differs per door; the measurement (measure_customer_door) is the same for all three."""

    env: dict[str, str]
    path: str
    send: Callable[[aiohttp.ClientSession, str, base.Report], Awaitable[bool]] | None = None  # -> accepted?
    make: Callable[[str], base.Report] | None = None  # set once the service runs (the API token)
    synchronous: bool = True  # the answer comes after the handling (report page, API)
    sent: dict[str, float] = field(default_factory=dict)  # sender -> request sent (synchronous doors)
    answered: dict[str, float] = field(default_factory=dict)  # sender -> answer received (synchronous doors)
    numbers: dict[str, str] = field(default_factory=dict)  # sender -> ticket number in the answer


class Addresses:
    """Client sessions bound to 127.1.x.y, a new address every PER_ADDRESS reports (the page counts reports per
    TCP peer address); an address's session is closed once its reports are answered."""

    def __init__(self) -> None:
        self._count = itertools.count()
        self._sessions: dict[int, tuple[aiohttp.ClientSession, list[int]]] = {}

    def take(self) -> tuple[int, aiohttp.ClientSession]:
        slot = next(self._count) // PER_ADDRESS
        if slot not in self._sessions:
            host = f"127.{1 + slot // 65536}.{slot // 256 % 256}.{slot % 256}"  # all of 127/8 is loopback
            connector = aiohttp.TCPConnector(limit=0, local_addr=(host, 0))
            self._sessions[slot] = (aiohttp.ClientSession(connector=connector), [0])
        return slot, self._sessions[slot][0]

    async def done(self, slot: int) -> None:
        session, answered = self._sessions[slot]
        answered[0] += 1
        if answered[0] == PER_ADDRESS:
            del self._sessions[slot]
            await session.close()

    async def close(self) -> None:
        for session, _ in self._sessions.values():
            await session.close()
        self._sessions.clear()


def _sync_sender(door: Door, ok_status: int, number_of: Callable[[bytes], str | None],
                 addresses: Addresses | None = None) -> Callable[..., Any]:
    async def send(session: aiohttp.ClientSession, url: str, report: base.Report) -> bool:
        door.sent[report.sender] = time.time()
        slot = None
        if addresses is not None:
            slot, session = addresses.take()
        try:
            async with session.post(url, data=report.body, headers=report.headers) as resp:
                body = await resp.read()
                received = time.time()
        finally:
            if slot is not None and addresses is not None:
                await addresses.done(slot)
        number = number_of(body) if resp.status == ok_status else None
        if number is None:
            return False
        door.answered[report.sender] = received
        door.numbers[report.sender] = number
        return True

    return send


def _report_page_number(body: bytes) -> str | None:
    text = body.decode("utf-8", "replace")
    found = _NUMBER.search(text)
    # the answer is the number AND the link to its tracking page; a follow-up page would not be a new ticket
    return found.group(1) if found and _TRACKING.search(text) and "已为您创建工单" in text else None


def _api_number(body: bytes) -> str | None:
    number = json.loads(body).get("number")
    return str(number) if number else None


async def measure_customer_door(door_name: str, args: argparse.Namespace) -> base.Figures:
    args = base.options(args)
    ctx = mp.get_context("spawn")
    stop, results, ports = ctx.Event(), ctx.Queue(), ctx.Queue()
    fake_proc = None
    fake_root = ""
    addresses: Addresses | None = None
    if door_name == "kf":
        fake_proc = ctx.Process(target=serve_kf_fake, args=(ports, stop, results), daemon=True)
        fake_proc.start()
        fake = ports.get(timeout=60)
        fake_root = fake["url"].rsplit("/cgi-bin/", 1)[0]
        callbacks = KfCallbacks(fake["corp_id"])

        async def kf_send(session: aiohttp.ClientSession, url: str, report: base.Report) -> bool:
            # the customer writes (the message lands in WeCom's log), then WeCom calls us back
            async with session.post(f"{fake_root}/bench/say", json={"user": report.sender, "text": base.FAULT}) \
                    as said:
                token = str((await said.json())["token"])
            sealed = callbacks.seal(report.sender, token)
            async with session.post(url, params=sealed.query, data=sealed.body, headers=sealed.headers) as resp:
                await resp.read()
                return resp.status == 200

        door = Door({"WECOM_CORP_ID": fake["corp_id"], "WECOM_TOKEN": base.WECOM_TOKEN,
                     "WECOM_ENCODING_AES_KEY": base.WECOM_AES_KEY, "WECOM_API_BASE": fake["url"],
                     "WECOM_KF_SECRET": fake["kf_secret"], "WECOM_KF_OPEN_KFID": KF_ACCOUNT},
                    "/wecom/callback", kf_send, make=lambda sender: base.Report(sender, b""), synchronous=False)
    elif door_name == "report-page":
        door = Door({}, f"/r/{REPORT_STORE}", make=ReportPageForms())  # the default configuration
        addresses = Addresses()
        door.send = _sync_sender(door, 200, _report_page_number, addresses)
    else:
        door = Door({"API_RATE_LIMIT_PER_MINUTE": LIFTED}, "/api/v1/tickets")
        door.send = _sync_sender(door, 201, _api_number)
    service: Any = None
    try:
        service = await base.deploy(args, door.env)
        if door_name == "api":
            door.make = ApiRequests(await asyncio.to_thread(register_api_client, service))
        assert door.make is not None and door.send is not None
        door_send = door.send
        urls = itertools.cycle([f"http://127.0.0.1:{port}{door.path}" for port in service.ports])
        run_id = secrets.token_hex(3)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            async def send(report: base.Report) -> bool:
                return await door_send(session, next(urls), report)

            async def answered(prefix: str) -> int:
                if door.synchronous:
                    return sum(1 for s in door.answered if s.startswith(prefix))
                async with session.get(f"{fake_root}/bench/answered", params={"prefix": prefix}) as resp:
                    return int((await resp.json())["count"])

            async def settled(load: base.Load, prefix: str) -> int:
                """Accepted reports fully done: answered, and nothing of theirs left in inbox/outbox."""
                return min(await answered(prefix), len(load.accepted) - await service.pending())

            warm = base.Load()
            warm_prefix = f"wmwarm{run_id}_"
            await base.run_load(send, door.make, warm_prefix, duration=120, connections=4, rate=0, load=warm,
                                count=args.warm_up)
            await base.wait_drained(warm, lambda: settled(warm, warm_prefix), 120)
            await asyncio.sleep(1)
            while await service.pending():  # the warm-up fully processed before the clock starts
                await asyncio.sleep(0.25)
            counts_before = await service.counters()
            cpu_before = service.cpu()
            profiler = base.start_profiler(service, args.profile, door_name)
            load = base.Load()
            prefix = f"wm{run_id}_"
            await base.run_load(send, door.make, prefix, duration=args.duration, connections=args.connections,
                                rate=args.rate, load=load)
            drained = await base.wait_drained(load, lambda: settled(load, prefix), args.drain)
            await asyncio.sleep(0.5)  # the last sends' stamps
        cpu = service.cpu() - cpu_before
        counts_after = await service.counters()
        base.stop_profiler(profiler)
        busy_rss = base.rss_mb(service.process.pid)
        if door.synchronous:
            rows = await ticket_rows(service)
            processed = {s: rows[n] for s, n in door.numbers.items() if n in rows}
            figures = base.summarise(door_name, load, processed, door.answered, cpu, 0.0)
            # acceptance is the answer: the latencies run from the request sent
            full = [s for s in load.accepted if s in processed]
            figures.to_processed = (base.pct([max(0.0, processed[s] - door.sent[s]) for s in full], 50),
                                    base.pct([max(0.0, processed[s] - door.sent[s]) for s in full], 99))
            figures.to_answer = (base.pct([door.answered[s] - door.sent[s] for s in full], 50),
                                 base.pct([door.answered[s] - door.sent[s] for s in full], 99))
            figures.note = f"p50/p99 from the request sent; RSS after load {busy_rss:.0f} MB"
        else:
            stop.set()
            answered_at = results.get(timeout=120)
            tickets = await service.tickets("wecom_kf")
            processed = {key.split(":", 1)[1]: at for key, at in tickets.items()}
            figures = base.summarise(door_name, load, processed, answered_at, cpu, drained)
            figures.note = f"RSS after load {busy_rss:.0f} MB"
        return await base.engine_figures(figures, args, service, counts_before, counts_after)
    finally:
        stop.set()
        if addresses is not None:
            await addresses.close()
        if service is not None:
            await base.undeploy(service)
        if fake_proc is not None:
            fake_proc.join(timeout=10)
            if fake_proc.is_alive():
                fake_proc.terminate()
