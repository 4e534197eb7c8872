"""The traceability sample (seed 1's 100 % check) as a ZIP: `GET /console/traceability.zip`.

"Random 100 closed tickets: which technician uploaded which photo when, when did the customer sign,
were both boxes ticked." Query: the ticket list's filters (bot/console/ticket_query.py; the status is
always 已结案) plus `n` (1–MAX_SAMPLE, default 100) and `seed` (an integer: the same seed on the same
data draws the same tickets; without one a seed is drawn and written into the ZIP so that the sample
can be drawn again).

The draw is a reservoir sample over the matching closed tickets, read as ids in batches off the event
loop (memory: n tickets, whatever the number of closed tickets). The ZIP, streamed as it is written (never in memory,
never on disk as a whole):

    README.txt              what this is: who drew it when, filter, seed, how to read the rest
    summary.csv             one line per ticket: the checks (签到, 技师照片数, 签字时间, 两项确认, 评分, 是否完整)
    <number>/trail.csv      the ticket's audit trail in order and in words (time, who, what, details)
    <number>/ticket.json    the same checks and the trail as data
    <number>/photos/…       every photo: <local time>_<uploader>_<purpose>_<sha256 prefix>.<ext>
    <number>/signature.png  the customer's signature image, when the sign-off kept one

Complete trail: the dashboards' 100 % traceability (core/reports/facts.py `TicketFacts.traceable`, computed
by the same function from the same trail): the check-in (the move to 已签到 with its position), at least 3
distinct work photos, the customer's signature, and both confirmations ticked.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import random
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any

from aiohttp import web
from sqlalchemy import select
from sqlmodel import col

from bot.console.auth import StaffSession, runtime_of, staff
from bot.console.export_workbooks import SampleDraw, draw_sample
from bot.console.exports import REPORT_ROLES, attachment, audit_export, bad_filter, checked_filter, run_job, stamp
from bot.console.ticket_query import FilterError, TicketFilter
from bot.photo_store import PhotoStore
from bot.runtime import Runtime
from bot.signature_store import SignatureStore
from core.intake.tickets import describe_event
from core.lifecycle.photos import CHECKIN, CUSTOMER, WORK
from core.lifecycle.signoff import CONFIRMATIONS
from core.model import ROLE_LABELS, AuditEvent, Role, TicketStatus
from core.reports.facts import TRACEABLE_PHOTOS, TRAIL_KINDS, TrailEvent, facts_of
from storage.tables import PersonRow

DEFAULT_SAMPLE = 100
MAX_SAMPLE = 1000
CHUNK = 256 * 1024
PURPOSE_WORDS = {CHECKIN: "签到", WORK: "检修", CUSTOMER: "客户", "signature": "签名"}
_MAGIC = ((b"\xff\xd8\xff", "jpg"), (b"\x89PNG", "png"), (b"GIF8", "gif"), (b"BM", "bmp"), (b"RIFF", "webp"))


@dataclass(frozen=True, slots=True)
class Sample:
    filter: TicketFilter
    n: int
    seed: int


def parse_sample(query: Any, f: TicketFilter) -> Sample:
    """`n` and `seed` (FilterError naming them); the status filter must allow 已结案."""
    if f.statuses and TicketStatus.CLOSED not in f.statuses:
        raise FilterError("status", "状态（status）：抽查只针对已结案工单，请去掉状态条件或选择「已结案」。")
    n_text = str(query.get("n", "") or "").strip()
    if n_text and (not n_text.isdigit() or not 1 <= int(n_text) <= MAX_SAMPLE):
        raise FilterError("n", f"抽查数量（n）应为 1–{MAX_SAMPLE} 之间的整数，收到「{n_text[:20]}」。")
    seed_text = str(query.get("seed", "") or "").strip()
    if seed_text and (not seed_text.isdigit() or len(seed_text) > 18):
        raise FilterError("seed", f"随机种子（seed）应为非负整数，收到「{seed_text[:20]}」。")
    closed = TicketFilter(**{**{k: getattr(f, k) for k in TicketFilter.__dataclass_fields__},
                             "statuses": (TicketStatus.CLOSED,)})
    return Sample(closed, int(n_text) if n_text else DEFAULT_SAMPLE,
                  int(seed_text) if seed_text else random.SystemRandom().randrange(10**9))


async def draw(runtime: Runtime, sample: Sample, store_ids: frozenset[str] | None) -> list[str]:
    """The sample's ticket numbers (a job off the loop: bot/console/export_workbooks.py draw_sample)."""
    config = runtime.service.config
    return await run_job(runtime, draw_sample, SampleDraw(
        filter=sample.filter, n=sample.n, seed=sample.seed, store_ids=store_ids, now=runtime.clock.now(),
        reminder_lead=config.sla.reminder_lead, zone=config.timezone, pause_states=frozenset(config.sla.pause_states)))


# --- one ticket's record ---


@dataclass(slots=True)
class TicketRecord:
    number: str
    store: str
    technician: str
    closed_at: datetime | None
    checked_in_at: datetime | None = None
    technician_photos: int = 0  # every photo a technician uploaded (check-in and work)
    work_photos: int = 0  # distinct work photos: what traceability counts
    checked_in: bool = False  # the move to 已签到 with the position shared for it
    complete: bool = False  # TicketFacts.traceable
    signed_at: datetime | None = None
    confirmations: dict[str, bool] = field(default_factory=dict)
    rating: int | None = None
    in_person: bool = False
    trail: list[dict[str, Any]] = field(default_factory=list)
    photos: list[dict[str, Any]] = field(default_factory=list)  # name, path (absolute), uploader, at, purpose
    signature_path: Path | None = None
    missing_files: list[str] = field(default_factory=list)

    @property
    def both_confirmed(self) -> bool:
        return all(self.confirmations.get(key) for key in CONFIRMATIONS)


def _iso(moment: datetime | None, zone: tzinfo) -> str:
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S") if moment is not None else ""


def _details(event: AuditEvent, names: dict[str, str]) -> str:
    p = event.payload
    if event.kind == "photo_added":
        purpose = PURPOSE_WORDS.get(str(p.get("purpose")), str(p.get("purpose", "")))
        return f"{purpose}照片 sha256={str(p.get('sha256'))[:12]}…"
    if event.kind == "signed_off":
        ticks = "；".join(f"{label}：{'已勾选' if (p.get('confirmations') or {}).get(key) else '未勾选'}"
                         for key, label in CONFIRMATIONS.items())
        return f"评分 {p.get('rating')}；{ticks}" + ("；现场签字（技师设备）" if p.get("in_person") else "")
    if event.kind in ("location_shared", "site_located"):
        return f"位置 {p.get('lat')}, {p.get('lng')}"
    if event.kind in ("offer_sent", "offer_accepted", "offer_declined", "offer_expired"):
        who = p.get("technician_id") or p.get("technician") or ""
        return f"技师 {names.get(str(who), who)}" if who else ""
    return ""


def _signature_sha(signed: dict[str, Any]) -> str | None:
    """The SHA-256 of the signature image the sign-off page stored (core/lifecycle/signoff.py page_extras)."""
    value = signed.get("signature_image")
    return value if isinstance(value, str) and len(value) == 64 else None


async def load_record(runtime: Runtime, number: str, photos: PhotoStore,
                      signatures: SignatureStore) -> TicketRecord | None:
    zone = runtime.service.config.timezone
    async with runtime.lookup_uow() as uow:
        ticket = await uow.get_ticket(number)
        if ticket is None:
            return None
        events = await uow.audit_for_ticket(number)
        photo_rows = await uow.list_photos(number)
    ids = {e.actor_id for e in events} | {p.uploader_id for p in photo_rows} | {ticket.assignee_id or ""}
    names = {"system": "系统"}
    roles: dict[str, str] = {"system": ""}
    if ids - {""}:
        async with runtime.engine.connect() as connection:
            rows = (await connection.execute(select(col(PersonRow.id), col(PersonRow.name), col(PersonRow.role))
                                             .where(col(PersonRow.id).in_(sorted(ids - {""}))))).all()
        for pid, name, role in rows:
            names[pid] = name
            try:
                roles[pid] = ROLE_LABELS[Role(role)]
            except ValueError:
                roles[pid] = role
    record = TicketRecord(number=number, store=ticket.store_id or "",
                          technician=names.get(ticket.assignee_id or "", ticket.assignee_id or ""),
                          closed_at=ticket.closed_at)
    for event in events:
        if event.kind == "status_changed" and event.payload.get("to") == TicketStatus.CHECKED_IN.value \
                and record.checked_in_at is None:
            record.checked_in_at = event.at
        if event.kind == "signed_off":
            record.signed_at = event.at
            record.confirmations = {k: bool(v) for k, v in (event.payload.get("confirmations") or {}).items()}
            rating = event.payload.get("rating")
            record.rating = rating if isinstance(rating, int) else None
            record.in_person = bool(event.payload.get("in_person"))
        record.trail.append({"at": _iso(event.at, zone), "actor_id": event.actor_id,
                             "actor": names.get(event.actor_id, event.actor_id),
                             "role": roles.get(event.actor_id, ""), "kind": event.kind,
                             "event": describe_event(event.kind, event.payload), "details": _details(event, names)})
    for index, photo in enumerate(photo_rows, start=1):
        if photo.purpose != CUSTOMER:
            record.technician_photos += 1
        path = photos.path_of(photo.sha256)
        uploader = names.get(photo.uploader_id, photo.uploader_id)
        stem = (f"{index:02d}_{photo.created_at.astimezone(zone):%Y%m%d-%H%M%S}_{_safe(uploader)}_"
                f"{PURPOSE_WORDS.get(photo.purpose, photo.purpose or '照片')}_{photo.sha256[:12]}")
        record.photos.append({"file": stem, "path": path, "uploader": uploader, "uploader_id": photo.uploader_id,
                              "at": _iso(photo.created_at, zone), "purpose": photo.purpose, "sha256": photo.sha256})
    facts = facts_of(ticket, [TrailEvent(e.kind, e.at, e.payload) for e in events if e.kind in TRAIL_KINDS],
                     zone, "")
    record.work_photos, record.checked_in, record.complete = facts.photos, facts.checkin, facts.traceable
    signed = (ticket.data.get("signoff") or {}).get("signed")
    sha = _signature_sha(signed) if isinstance(signed, dict) else None
    if sha is not None:
        record.signature_path = signatures.path_of(sha)
    return record


def _safe(text: str) -> str:
    return "".join(c for c in text if c.isalnum() or c in "-_")[:24] or "未知"


# --- writing the ZIP (in a thread; the sink hands each chunk to the loop) ---


class ResponseSink(io.RawIOBase):
    """A write-only, unseekable file for zipfile (it then writes data descriptors): buffered chunks
    go to the response on the event loop; a write waits for the client (back-pressure)."""

    def __init__(self, response: web.StreamResponse, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._response = response
        self._loop = loop
        self._buffer = bytearray()
        self._written = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self._buffer += chunk
        self._written += len(chunk)
        if len(self._buffer) >= CHUNK:
            self.send()
        return len(chunk)

    def tell(self) -> int:
        return self._written

    def send(self) -> None:
        if self._buffer:
            data = bytes(self._buffer)
            self._buffer.clear()
            asyncio.run_coroutine_threadsafe(self._response.write(data), self._loop).result()


def _csv(rows: Sequence[Sequence[Any]]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows(rows)
    return b"\xef\xbb\xbf" + buffer.getvalue().encode("utf-8")


def _entry(name: str, moment: datetime | None, zone: tzinfo) -> zipfile.ZipInfo:
    local = moment.astimezone(zone) if moment is not None else datetime(1980, 1, 1)
    info = zipfile.ZipInfo(name, date_time=(max(local.year, 1980), local.month, local.day, local.hour, local.minute,
                                            local.second))
    info.compress_type = zipfile.ZIP_DEFLATED
    return info


def _extension(data: bytes) -> str:
    return next((ext for magic, ext in _MAGIC if data.startswith(magic)), "bin")


SUMMARY_HEADER = ("工单号", "门店", "技师", "结案时间", "技师签到时间", "技师照片数", "检修照片数（不重复）",
                  "客户签字时间", *CONFIRMATIONS.values(), "评分", "现场签字", "签名图片", "可追溯（全部满足）",
                  "缺失文件")


def summary_row(r: TicketRecord, zone: tzinfo) -> list[Any]:
    return [r.number, r.store, r.technician, _iso(r.closed_at, zone), _iso(r.checked_in_at, zone),
            r.technician_photos, r.work_photos, _iso(r.signed_at, zone),
            *("是" if r.confirmations.get(key) else "否" for key in CONFIRMATIONS),
            r.rating if r.rating is not None else "", "是" if r.in_person else "否",
            "有" if r.signature_path is not None else "无", "是" if r.complete else "否", "；".join(r.missing_files)]


def write_ticket(archive: zipfile.ZipFile, r: TicketRecord, zone: tzinfo) -> None:
    """One ticket's folder (blocking: file reads and compression)."""
    folder = r.number
    for photo in r.photos:
        try:
            data = Path(photo["path"]).read_bytes()
        except OSError:
            r.missing_files.append(photo["file"])
            photo["missing"] = True
            continue
        info = _entry(f"{folder}/photos/{photo['file']}.{_extension(data)}", None, zone)
        info.compress_type = zipfile.ZIP_STORED  # images do not compress
        archive.writestr(info, data)
    if r.signature_path is not None:
        try:
            data = r.signature_path.read_bytes()
            info = _entry(f"{folder}/signature.{_extension(data)}", r.signed_at, zone)
            info.compress_type = zipfile.ZIP_STORED
            archive.writestr(info, data)
        except OSError:
            r.missing_files.append("signature")
    archive.writestr(_entry(f"{folder}/trail.csv", r.closed_at, zone), _csv(
        [("时间", "操作人", "角色", "事件", "详情", "事件代码")]
        + [(e["at"], e["actor"], e["role"], e["event"], e["details"], e["kind"]) for e in r.trail]))
    document = {
        "number": r.number, "store": r.store, "technician": r.technician, "closed_at": _iso(r.closed_at, zone),
        "checks": {"checked_in_at": _iso(r.checked_in_at, zone), "checked_in_with_position": r.checked_in,
                   "technician_photos": r.technician_photos, "work_photos": r.work_photos,
                   "signed_at": _iso(r.signed_at, zone), "confirmations": r.confirmations,
                   "both_confirmed": r.both_confirmed, "rating": r.rating, "in_person": r.in_person,
                   "signature_image": r.signature_path is not None, "complete": r.complete},
        "photos": [{k: v for k, v in p.items() if k != "path"} for p in r.photos],
        "trail": r.trail, "missing_files": r.missing_files, "timezone": str(zone),
    }
    archive.writestr(_entry(f"{folder}/ticket.json", r.closed_at, zone),
                     json.dumps(document, ensure_ascii=False, indent=1))


def readme(session: StaffSession, sample: Sample, drawn: int, now: datetime, zone: tzinfo) -> str:
    query = "；".join(f"{k}={v}" for k, v in sample.filter.to_query(page=None, per=None, sort=None).items())
    return "\r\n".join([
        "工单可追溯性抽查（随机抽取已结案工单）",
        f"导出人：{session.person.name}（{session.person.id}）",
        f"导出时间：{now.astimezone(zone):%Y-%m-%d %H:%M:%S}（{zone}）",
        f"筛选条件：{query}",
        f"抽取数量：{drawn}（请求 {sample.n}）；随机种子 seed={sample.seed}（相同数据、相同 seed 抽到相同工单）",
        "",
        "summary.csv：每张工单一行——技师签到时间、技师照片数、客户签字时间、两项确认是否勾选、评分、是否完整。",
        f"完整（可追溯）= 现场签到（含位置）、不重复的检修照片 ≥ {TRACEABLE_PHOTOS} 张、客户已签字、两项确认均已勾选"
        "（与看板的「100% 可追溯」同一口径）。",
        "<工单号>/trail.csv：该工单审计记录（按时间顺序，文字说明）；ticket.json：同样内容的数据版。",
        "<工单号>/photos/：每张照片，文件名为 序号_上传时间_上传人_用途_sha256前缀。",
        "<工单号>/signature.png：客户签名图片（有时）。",
        "",
    ])


async def traceability_zip(request: web.Request) -> web.StreamResponse:
    session = await staff(request, *REPORT_ROLES)
    f = await checked_filter(request, session)
    try:
        sample = parse_sample(request.query, f)
    except FilterError as error:
        raise bad_filter(error) from None
    runtime = runtime_of(request)
    zone = runtime.service.config.timezone
    now = runtime.clock.now()
    numbers = await draw(runtime, sample, session.store_ids)
    await audit_export(request, session, "traceability.zip", {
        "query": sample.filter.to_query(page=None, per=None, sort=None), "n": sample.n, "seed": sample.seed,
        "tickets": numbers})
    response = web.StreamResponse(headers={"Content-Type": "application/zip", "Content-Disposition":
                                           attachment(f"traceability-{stamp(runtime)}.zip")})
    await response.prepare(request)
    loop = asyncio.get_running_loop()
    sink = ResponseSink(response, loop)
    archive = zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED)
    photos = PhotoStore(runtime.settings.data_dir)
    signatures = SignatureStore(runtime.settings.data_dir)
    records: list[TicketRecord] = []
    try:
        await asyncio.to_thread(archive.writestr, _entry("README.txt", now, zone),
                                readme(session, sample, len(numbers), now, zone).encode("utf-8"))
        for number in numbers:
            record = await load_record(runtime, number, photos, signatures)
            if record is None:  # purged since the draw
                continue
            await asyncio.to_thread(write_ticket, archive, record, zone)
            record.trail, record.photos = [], []  # the summary needs only the checks
            records.append(record)
        summary = _csv([SUMMARY_HEADER, *(summary_row(r, zone) for r in records)])
        await asyncio.to_thread(archive.writestr, _entry("summary.csv", now, zone), summary)
        await asyncio.to_thread(archive.close)
        await asyncio.to_thread(sink.send)
    finally:
        archive.fp = None  # never write again on a broken stream (ZipFile.__del__ would try)
    await response.write_eof()
    return response
