"""GET/POST /r/{store_code}: the report page a store's QR code opens (plain WeChat browser, any browser).

A report from the page is the chat's report: `ReportFault` run as the customer holding the phone
(bot/web/customer/report_customer.py), with the page's store, and customer photos attached with
`AddPhoto` exactly as a photo sent in the chat is (staged, decoded, kept only once accepted). The
per-customer intake limit applies there; the page adds its own guards in front:

* a honeypot field (bots fill every input; people never see it);
* a per-address limit (REPORT_PAGE_LIMIT_PER_IP_HOUR) on reports and, separately, on code requests;
* the phone confirmed by an SMS code when SMS is configured (two steps: 获取验证码, then 提交 with it);
* photo size (REPORT_PAGE_MAX_PHOTO_BYTES) and type checks, each refused photo named in Chinese while
  everything else typed or chosen stays in the form (checked photos are kept between rounds).

The page works without JavaScript; with it, the browser's position fills the hidden lat/lng fields and
a confirmed phone prefills the plate/VIN/SN from master data (GET /r/{store_code}/lookup).
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import aiohttp_jinja2
from aiohttp import web

from bot.photo_store import PhotoStore, StagedPhoto
from bot.runtime import Runtime
from bot.sms.codes import check_code, send_code
from bot.sms.errors import SmsError
from bot.sms.phones import mobile_or_none
from bot.web.api import RUNTIME
from bot.web.customer.report_customer import web_customer
from bot.web.customer.report_form import MAX_PHOTOS, FormUnreadable, ReportForm, read_form
from bot.web.customer.report_uploads import KeptPhotos
from core.commands import AddPhoto, ReportFault
from core.errors import InvalidInput, TicketbotError
from core.intake.tickets import MAX_DESCRIPTION
from core.masterdata.identifiers import mask_phone
from core.masterdata.model import StoreRecord
from core.model import Ticket
from storage.sms_store import SqlSmsStore

log = logging.getLogger(__name__)

HOUR = timedelta(hours=1)
MAX_SUBJECT = 64
MAX_ADDRESS = 200


def add_routes(app: web.Application) -> None:
    app.router.add_get("/r/{store_code}", report_page)
    app.router.add_post("/r/{store_code}", submit_report)
    app.router.add_get("/r/{store_code}/lookup", lookup_assets)


# --- the page -------------------------------------------------------------------------------------

@dataclass(slots=True)
class PageState:
    """What the form shows: the values as typed, kept photos, messages."""

    values: dict[str, str] = field(default_factory=dict)
    kept: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    notice: str = ""
    code_sent: bool = False


async def _store(runtime: Runtime, code: str) -> StoreRecord | None:
    async with runtime.lookup_uow() as uow:
        store = await uow.masterdata().get_store(code.strip())
    return store if store is not None and store.active else None


def _sms_on(runtime: Runtime) -> bool:
    return runtime.settings.sms_provider is not None


def _render_form(request: web.Request, store: StoreRecord, state: PageState, *, status: int = 200) -> web.Response:
    runtime: Runtime = request.app[RUNTIME]
    response = aiohttp_jinja2.render_template("customer/report.html", request, {
        "store": store, "v": state.values, "kept": state.kept, "errors": state.errors, "notice": state.notice,
        "code_sent": state.code_sent, "sms": _sms_on(runtime), "max_photos": MAX_PHOTOS,
        "max_photo_mb": runtime.settings.report_page_max_photo_bytes // 1048576,
        "max_description": MAX_DESCRIPTION}, status=status)
    _no_store(response)
    return response


def _no_store(response: web.StreamResponse) -> None:
    # A phone number typed into the page must not stay in a shared cache.
    response.headers["Cache-Control"] = "no-store"


def _store_missing(request: web.Request) -> web.Response:
    response = aiohttp_jinja2.render_template("customer/report_not_found.html", request, {}, status=404)
    _no_store(response)
    return response


async def report_page(request: web.Request) -> web.Response:
    runtime: Runtime = request.app[RUNTIME]
    store = await _store(runtime, request.match_info["store_code"])
    if store is None:
        return _store_missing(request)
    return _render_form(request, store, PageState())


# --- submitting -----------------------------------------------------------------------------------

def _client_address(request: web.Request) -> str:
    """The peer's address. Behind a reverse proxy this is the proxy's unless the app is set up to
    trust its forwarding headers (aiohttp-remotes): one address for everyone, limit accordingly."""
    return (request.remote or "unknown")[:64]


def _coordinates(form: ReportForm, errors: list[str]) -> tuple[float | None, float | None]:
    lat_text, lng_text = form.get("lat"), form.get("lng")
    if not lat_text and not lng_text:
        return None, None
    try:
        lat, lng = float(lat_text), float(lng_text)
    except ValueError:
        errors.append("位置信息无法识别，请重新获取位置或填写地址。")
        return None, None
    if not (math.isfinite(lat) and math.isfinite(lng) and -90 <= lat <= 90 and -180 <= lng <= 180):
        errors.append("位置信息超出范围，请重新获取位置或填写地址。")
        return None, None
    return lat, lng


async def _check_photos(runtime: Runtime, form: ReportForm, kept: KeptPhotos,
                        errors: list[str]) -> tuple[list[StagedPhoto], list[str]]:
    """Every photo (new uploads and those kept from before) decoded and staged; refused ones named in
    `errors`. Returns the staged photos and the tokens of kept photos they came from."""
    photos = PhotoStore(runtime.settings.data_dir)
    staged: list[StagedPhoto] = []
    used_tokens: list[str] = []
    for token in form.kept[:MAX_PHOTOS]:
        data = await kept.load(token)
        if data is None:
            errors.append("之前选择的一张照片已过期，请重新选择。")
            continue
        try:
            staged.append(await photos.stage(data))
            used_tokens.append(token)
        except InvalidInput as error:
            errors.append(error.user_message)
    for upload in form.uploads:
        if len(upload.data) > runtime.settings.report_page_max_photo_bytes:
            errors.append(f"照片「{upload.filename}」太大（{len(upload.data) // 1024} KB），每张不超过 "
                          f"{runtime.settings.report_page_max_photo_bytes // 1048576} MB，未保存。")
            continue
        try:
            staged.append(await photos.stage(upload.data))
        except InvalidInput as error:
            errors.append(f"照片「{upload.filename}」未保存：{error.user_message}")
    return staged, used_tokens


async def _keep_for_next_round(photos: list[StagedPhoto], kept: KeptPhotos, tokens: list[str]) -> list[str]:
    """The form goes back to the person: staged photos become kept ones (their tokens in the form).
    `photos` starts with those staged from the kept `tokens`, in order; the rest are new uploads."""
    store = PhotoStore(kept.folder.parent)
    result = list(tokens)
    for photo in photos[len(tokens):]:
        result.append(await kept.keep(await asyncio.to_thread(photo.temp_path.read_bytes)))
    for photo in photos:
        await store.discard(photo)
    return result


def _values(form: ReportForm) -> dict[str, str]:
    """What goes back into the form (never the honeypot, never the code)."""
    return {name: form.get(name) for name in ("phone", "subject", "description", "address", "lat", "lng",
                                              "new_problem")}


async def submit_report(request: web.Request) -> web.Response:
    runtime: Runtime = request.app[RUNTIME]
    store = await _store(runtime, request.match_info["store_code"])
    if store is None:
        return _store_missing(request)
    try:
        form = await read_form(request, runtime.settings.report_page_max_photo_bytes)
    except FormUnreadable as error:
        response = aiohttp_jinja2.render_template("customer/report_error.html", request, {
            "store": store, "message": error.user_message}, status=error.status)
        _no_store(response)
        return response
    kept = KeptPhotos(runtime.settings.data_dir)
    state = PageState(values=_values(form), errors=list(form.errors))
    staged: list[StagedPhoto] = []
    used_tokens: list[str] = []
    try:
        if form.get("website"):  # the honeypot: invisible to people, filled by form robots
            log.info("report page %s: honeypot filled from %s", store.code, _client_address(request))
            state.errors.append("提交未成功：表单中一个应留空的隐藏项被填写了（可能是浏览器自动填充）。"
                                "请检查后重新提交。")
            state.kept = list(form.kept)
            return _render_form(request, store, state, status=400)
        staged, used_tokens = await _check_photos(runtime, form, kept, state.errors)
        if form.get("action") == "send_code":
            return await _send_code(request, runtime, store, form, state, staged, used_tokens, kept)
        return await _report(request, runtime, store, form, state, staged, used_tokens, kept)
    finally:
        for photo in staged:  # those not kept by an accepted AddPhoto nor moved to the kept folder
            await PhotoStore(runtime.settings.data_dir).discard(photo)


async def _back_to_form(request: web.Request, store: StoreRecord, state: PageState, staged: list[StagedPhoto],
                        used_tokens: list[str], kept: KeptPhotos, *, status: int = 400) -> web.Response:
    state.kept = await _keep_for_next_round(staged, kept, used_tokens)
    staged.clear()
    return _render_form(request, store, state, status=status)


async def _send_code(request: web.Request, runtime: Runtime, store: StoreRecord, form: ReportForm, state: PageState,
                     staged: list[StagedPhoto], used_tokens: list[str], kept: KeptPhotos) -> web.Response:
    phone = mobile_or_none(form.get("phone"))
    if not _sms_on(runtime):
        state.errors.append("本店未开通短信验证，无需验证码，请直接提交。")
    elif phone is None:
        state.errors.append("请填写正确的 11 位手机号（例如 13800138000），再获取验证码。")
    elif not await SqlSmsStore(runtime.sessions).count_hit(
            _client_address(request), "code", now=runtime.clock.now(),
            limit=runtime.settings.report_page_limit_per_ip_hour, window=HOUR):
        state.errors.append("获取验证码过于频繁，请稍后再试。")
    else:
        try:
            await send_code(runtime, phone)
        except SmsError as error:
            state.errors.append(error.user_message)
        else:
            state.code_sent = True
            state.notice = f"验证码已发送至 {mask_phone(phone)}，10 分钟内有效。"
            return await _back_to_form(request, store, state, staged, used_tokens, kept, status=200)
    return await _back_to_form(request, store, state, staged, used_tokens, kept)


async def _report(request: web.Request, runtime: Runtime, store: StoreRecord, form: ReportForm, state: PageState,
                  staged: list[StagedPhoto], used_tokens: list[str], kept: KeptPhotos) -> web.Response:
    phone = mobile_or_none(form.get("phone"))
    if phone is None:
        state.errors.append("请填写正确的 11 位手机号（例如 13800138000），门店会通过它联系您。")
    description = form.get("description")
    if not description:
        state.errors.append("请描述一下故障情况，例如：底盘有异响、中控黑屏。")
    elif len(description) > MAX_DESCRIPTION:
        state.errors.append(f"故障描述太长了（{len(description)} 字），请精简到 {MAX_DESCRIPTION} 字以内。")
    subject = form.get("subject")
    if len(subject) > MAX_SUBJECT:
        state.errors.append(f"车牌号/VIN/设备编号太长了，请核对（不超过 {MAX_SUBJECT} 个字符）。")
    address = form.get("address")
    if len(address) > MAX_ADDRESS:
        state.errors.append(f"地址太长了，请精简到 {MAX_ADDRESS} 字以内。")
    lat, lng = _coordinates(form, state.errors)
    code = form.get("code")
    if _sms_on(runtime) and phone is not None and not code:
        state.errors.append("请先点击「获取验证码」，填写短信中的 6 位验证码后再提交。")
    if state.errors:
        state.code_sent = bool(code)
        return await _back_to_form(request, store, state, staged, used_tokens, kept)
    assert phone is not None
    if not await _count_report(runtime, request):
        state.errors.append("该网络提交的报修过多，请稍后再试；情况紧急请直接致电门店。")
        return await _back_to_form(request, store, state, staged, used_tokens, kept, status=429)
    if _sms_on(runtime) and not await check_code(runtime, phone, code):
        state.errors.append("验证码错误或已过期，请核对短信中的验证码，或重新获取。")
        state.code_sent = True
        return await _back_to_form(request, store, state, staged, used_tokens, kept)
    customer = await web_customer(runtime, phone, store.code)
    text = description if not address else f"{description}\n地址：{address}"
    started = runtime.clock.now()
    try:
        ticket = await runtime.service.handle(
            ReportFault(text, subject=subject, lat=lat, lng=lng, new_problem=form.get("new_problem") == "1"),
            customer.person, new_actor=customer.new_actor)
    except TicketbotError as error:
        state.errors.append(error.user_message)
        return await _back_to_form(request, store, state, staged, used_tokens, kept)
    if ticket is None:  # the per-customer intake limit held it back (recorded, supervisors told)
        for token in used_tokens:
            await kept.drop(token)
        response = aiohttp_jinja2.render_template("customer/report_limited.html", request, {
            "store": store, "limit": runtime.settings.report_limit_per_sender,
            "minutes": round(runtime.settings.report_limit_window_minutes)}, status=429)
        _no_store(response)
        return response
    attached, refused = await _attach_photos(runtime, customer.person, staged)
    for token in used_tokens:
        await kept.drop(token)
    return _answer(request, runtime, store, ticket, attached=attached, refused=refused,
                   follow_up=ticket.created_at < started)  # a repeat of an open ticket: a follow-up on it


async def _count_report(runtime: Runtime, request: web.Request) -> bool:
    """Count this report against the address's hourly limit (storage/sms_store.py holds the counter)."""
    return await SqlSmsStore(runtime.sessions).count_hit(
        _client_address(request), "report", now=runtime.clock.now(),
        limit=runtime.settings.report_page_limit_per_ip_hour, window=HOUR)


async def _attach_photos(runtime: Runtime, person: Any, staged: list[StagedPhoto]) -> tuple[int, list[str]]:
    """Each photo as the chat attaches a customer's photo (bot/chat/lifecycle.py on_image)."""
    photos = PhotoStore(runtime.settings.data_dir)
    attached, refused = 0, []
    while staged:
        photo = staged.pop(0)
        try:
            await runtime.service.handle(AddPhoto(photo.sha256, photo.relative_path, photo.size, width=photo.width,
                                                  height=photo.height), person)
        except TicketbotError as error:
            await photos.discard(photo)
            refused.append(error.user_message)
            continue
        await photos.keep(photo)
        attached += 1
    return attached, refused


def _answer(request: web.Request, runtime: Runtime, store: StoreRecord, ticket: Ticket, *, attached: int,
            refused: list[str], follow_up: bool) -> web.Response:
    tracking: Any = getattr(runtime, "tracking", None)
    tracking_url = tracking.url_for(ticket) if tracking is not None else None
    response = aiohttp_jinja2.render_template("customer/report_done.html", request, {
        "store": store, "ticket": ticket, "tracking_url": tracking_url, "attached": attached, "refused": refused,
        "follow_up": follow_up, "sms": _sms_on(runtime)})
    _no_store(response)
    return response


# --- prefill --------------------------------------------------------------------------------------

async def lookup_assets(request: web.Request) -> web.Response:
    """What master data knows of the phone's customer, for the form: their plates/VINs/SNs. Only for a
    confirmed phone (the code it was sent, still unused) when SMS is configured; a number typed by a
    stranger reveals nothing. Without SMS nothing is revealed either: the report is matched to the
    customer's master data by the core when it is submitted."""
    runtime: Runtime = request.app[RUNTIME]
    store = await _store(runtime, request.match_info["store_code"])
    if store is None:
        raise web.HTTPNotFound(text='{"error": "unknown store"}', content_type="application/json")
    phone = mobile_or_none(request.query.get("phone", ""))
    code = request.query.get("code", "").strip()
    if phone is None or not _sms_on(runtime) or not code:
        return _json({"subjects": []})
    if not await check_code(runtime, phone, code, consume=False):
        return _json({"subjects": [], "error": "验证码错误或已过期"}, status=403)
    async with runtime.lookup_uow() as uow:
        md = uow.masterdata()
        owners = [c for c in await md.customers_by_phone(phone) if c.forgotten_at is None]
        subjects: list[str] = []
        for owner in owners[:1] if len(owners) == 1 else []:  # two customers sharing a phone: no guess
            for asset in await md.assets_of_customer(owner.id):
                label = asset.display_id or asset.key()
                if label and label not in subjects:
                    subjects.append(label)
    return _json({"subjects": subjects[:10]})


def _json(data: dict[str, Any], *, status: int = 200) -> web.Response:
    response = web.json_response(data, status=status)
    _no_store(response)
    return response
