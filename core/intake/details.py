"""The details a report needs besides its text: where the job is, which device it is about.

* **Before the report.** A customer's location message (or `设备编号 X` alone) with no open ticket
  waiting for it is kept for their next report within `IntakeLimits.location_window` (30 min): a
  durable per-person timer row (kind `intake.pending`, key `@<person id>`, the same shape as the
  reminder digest's window), so every process sees it and it lapses by itself. Intake reads it
  with one index probe (`pending_details`) and consumes it when the ticket is made.
* **After the report.** A new ticket whose site is unknown asks once (LOCATION_QUESTION, flag
  `location_asked`). The customer's next location message, or an address text that matches one of
  their known addresses or a store's (a geocode against known addresses only; unmatched text is
  still recorded as the address), sets the newest open ticket's site (`location_source`
  location_message | geocoded | customer_address). `设备编号 X` alone attaches the asset to the newest
  open ticket that has none. Dispatch hears of a new site through `@after_site_located` hooks
  (core/dispatch/site.py): the open offer stands, the technician holding it is told; later offers
  rank with the site.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from core.errors import InvalidInput
from core.intake.limits import intake_limits
from core.masterdata.model import Address
from core.masterdata.prefill import (
    FROM_CUSTOMER_ADDRESS,
    FROM_GEOCODE,
    FROM_MESSAGE,
    MASTERDATA,
    PENDING_KIND,
    Recognised,
    contract_for,
    identifier_of,
    pending_key,
    recognise,
    warranty_of,
)
from core.model import Role, Ticket, TicketStatus
from core.service import Context, handles
from core.timers import timer_handler

LOCATION_QUESTION = ("为了让技师尽快到达，请发送您的位置（聊天窗口「＋」→「位置」），"
                     "或回复详细地址（例如：地址 上海市浦东新区张江路100号）。")
MAX_ADDRESS = 200
# Words an address has and a fault report rarely has: "…路100号", "…小区3栋", "…镇…村".
ADDRESS_LIKE = re.compile(r"(?:省|市|区|县|镇|乡|村|路|街|道|巷|弄|大道|小区|园区|大厦|广场).{0,20}?"
                          r"(?:\d+\s*(?:号|弄|栋|幢|楼|室|单元)|小区|大厦|广场|园区|村)")
SiteHook = Callable[[Context, Ticket], Awaitable[None]]
_SITE_HOOKS: list[SiteHook] = []


def after_site_located(fn: SiteHook) -> SiteHook:
    """Register what follows when an existing ticket learns its site (dispatch: tell the technician)."""
    _SITE_HOOKS.append(fn)
    return fn


@dataclass(frozen=True, slots=True)
class ShareSite:
    """A customer's location message (or `位置 纬度,经度`)."""

    lat: float
    lng: float


@dataclass(frozen=True, slots=True)
class GiveAddress:
    """A customer's address text (`地址 …`, or a text that looks like an address): the site of the
    newest open ticket that asked for one. `explicit`: typed with 地址 (always answered)."""

    text: str
    explicit: bool = True


@dataclass(frozen=True, slots=True)
class GiveAssetNumber:
    """`设备编号 X` alone: the asset of the newest open ticket without one, else of the next report."""

    text: str


async def pending_details(ctx: Context, person_id: str) -> dict[str, Any] | None:
    """What the customer sent just before reporting (location, device number), None when nothing or lapsed."""
    if ctx.actor_is_new and person_id == ctx.actor.id:
        return None  # stored by this very command: nothing they sent before can be waiting (no query)
    return await _read_pending(ctx, person_id)


async def _read_pending(ctx: Context, person_id: str) -> dict[str, Any] | None:
    timer = await ctx.uow.get_timer(PENDING_KIND, pending_key(person_id))
    if timer is None or timer.state != "pending" or timer.due_at <= ctx.now:
        return None
    return timer.payload


async def consume_pending(ctx: Context, person_id: str) -> None:
    await ctx.uow.cancel_timers(pending_key(person_id), {PENDING_KIND})


async def keep_pending(ctx: Context, person_id: str, **items: Any) -> timedelta:
    window = intake_limits(ctx.service).location_window
    if window <= timedelta(0):
        return window  # LOCATION_WINDOW_MINUTES=0: nothing sent before a report is kept
    # Read even for a new actor: this command may have kept something already.
    payload = dict(await _read_pending(ctx, person_id) or {"person": person_id})
    payload.update(items)
    await ctx.uow.schedule_timer(kind=PENDING_KIND, ticket_number=pending_key(person_id), due_at=ctx.now + window,
                                 payload=payload)
    return window


@timer_handler(PENDING_KIND)
async def _lapsed(_ctx: Context, _ticket: Ticket | None, _payload: dict[str, Any]) -> None:
    """The window closed: nothing to do, the next report no longer takes what was sent."""


def masterdata_of(ticket: Ticket) -> dict[str, Any]:
    value = ticket.data.get(MASTERDATA)
    if not isinstance(value, dict):
        value = ticket.data[MASTERDATA] = {}
    return value


def site_known(ticket: Ticket) -> bool:
    return ticket.site_lat is not None and ticket.site_lng is not None


async def _newest_open(ctx: Context, want: Callable[[Ticket], bool]) -> Ticket | None:
    """The customer's newest open ticket, locked, when `want` says it is the one."""
    found = await ctx.uow.list_tickets(customer_id=ctx.actor.id, statuses={s for s in TicketStatus if s.is_open},
                                       limit=1)
    if not found or not want(found[0]):
        return None
    return await ctx.ticket(found[0].number)


async def set_site(ctx: Context, ticket: Ticket, lat: float | None, lng: float | None, *, source: str,
                   address: str | None = None) -> None:
    """Record where the job is, audit it and let dispatch follow (hooks)."""
    facts = masterdata_of(ticket)
    if lat is not None and lng is not None:
        ticket.site_lat, ticket.site_lng = lat, lng
        facts["location_source"] = source
    if address:
        facts["address"] = address[:MAX_ADDRESS]
    ticket.updated_at = ctx.now
    await ctx.uow.save_ticket(ticket)
    await ctx.audit("site_located", {"lat": lat, "lng": lng, "source": source,
                                     **({"address": address[:MAX_ADDRESS]} if address else {})}, ticket)
    if lat is not None and lng is not None:
        for hook in _SITE_HOOKS:
            await hook(ctx, ticket)


def _require_customer(ctx: Context, what: str) -> None:
    if ctx.actor.role is not Role.CUSTOMER:
        raise InvalidInput(f"「{what}」供报修客户使用。")


@handles(ShareSite)
async def share_site(ctx: Context, cmd: ShareSite) -> Ticket | None:
    """The newest open ticket without a site takes it; otherwise it waits for the next report."""
    _require_customer(ctx, "位置")
    ticket = await _newest_open(ctx, lambda t: not site_known(t))
    if ticket is not None:
        await set_site(ctx, ticket, cmd.lat, cmd.lng, source=FROM_MESSAGE)
        await ctx.tell(ctx.actor.id, f"已记录工单 {ticket.number} 的现场位置，技师会据此前往。", ticket=ticket)
        return ticket
    window = await keep_pending(ctx, ctx.actor.id,
                                location={"lat": cmd.lat, "lng": cmd.lng, "at": ctx.now.isoformat()})
    minutes = int(window.total_seconds() // 60)
    kept = f"请接着描述故障（例如「空调不制冷」），{minutes} 分钟内的报修会以这个位置作为上门地点。"
    later = "报修后再发送位置，可帮助技师更快到达现场。"
    await ctx.tell(ctx.actor.id, "已收到位置。" + (kept if minutes > 0 else later))
    return None


def _fold(text: str) -> str:
    return re.sub(r"[\s,，。.、:：;；()（）#\-]", "", unicodedata.normalize("NFKC", text)).casefold()


def geocode(text: str, addresses: list[tuple[Address, str]]) -> tuple[Address, str] | None:
    """A known address (with coordinates) the text names, and its source: equal, or one contains the
    other, after folding width, case, spaces and punctuation. The longest match wins (the most specific)."""
    folded = _fold(text)
    if len(folded) < 4:
        return None
    hits = [(a, source) for a, source in addresses if a.lat is not None and a.lng is not None
            and len(f := _fold(a.text)) >= 4 and (f in folded or folded in f)]
    return max(hits, key=lambda hit: len(hit[0].text), default=None)


async def known_addresses(ctx: Context) -> list[tuple[Address, str]]:
    """The customer's own addresses, then the stores' (address and name)."""
    md = ctx.uow.masterdata()
    customer = await md.get_customer(ctx.actor.id)
    known = [(a, FROM_CUSTOMER_ADDRESS) for a in (customer.addresses if customer is not None
                                                  and customer.forgotten_at is None else ())]
    for store in await md.list_stores():
        if store.active:
            known += [(Address(store.name, text, store.lat, store.lng), FROM_GEOCODE)
                      for text in (store.address, store.name) if text]
    return known


@handles(GiveAddress)
async def give_address(ctx: Context, cmd: GiveAddress) -> Ticket | None:
    """The address of the newest open ticket that asked for its location. Not `explicit` (a text
    that only looks like an address): None when no ticket waits for one (the text goes on as usual)."""
    _require_customer(ctx, "地址")
    text = cmd.text.strip()[:MAX_ADDRESS]
    if not text:
        raise InvalidInput("请在「地址」后写上详细地址，例如：地址 上海市浦东新区张江路100号。")
    waiting = await _newest_open(ctx, lambda t: not site_known(t) and (
        cmd.explicit or bool(masterdata_of(t).get("location_asked"))))
    if waiting is None:
        if cmd.explicit:
            await ctx.tell(ctx.actor.id, "您目前没有等待地址的工单。报修时直接描述故障即可，地址可在建单后补充。")
        return None
    hit = geocode(text, await known_addresses(ctx))
    if hit is None:
        await set_site(ctx, waiting, None, None, source=FROM_GEOCODE, address=text)
        await ctx.tell(ctx.actor.id, f"已记录工单 {waiting.number} 的地址：{text}。没能在已知地址中找到它的坐标，"
                                     "方便的话请再发送一次位置，技师会更快找到您。", ticket=waiting)
        return waiting
    place, source = hit
    await set_site(ctx, waiting, place.lat, place.lng, source=source, address=place.text or text)
    await ctx.tell(ctx.actor.id, f"已记录工单 {waiting.number} 的地址：{place.text or text}，技师会据此前往。",
                   ticket=waiting)
    return waiting


async def attach_asset(ctx: Context, ticket: Ticket, found: Recognised) -> None:
    """Link a ticket made without its asset: subject, asset, the asset's store, contract, warranty."""
    asset = found.asset
    facts = masterdata_of(ticket)
    ticket.subject = found.subject or ticket.subject
    facts["asset_key"] = found.asset_key
    if asset is not None:
        today = ctx.now.astimezone(ctx.config.timezone).date()
        ticket.asset_id = asset.id
        ticket.store_id = ticket.store_id or asset.store_code
        facts["asset"] = {"id": asset.id, "display_id": found.subject, "brand": asset.brand, "model": asset.model}
        facts["warranty"] = warranty_of(asset, today)
        contract = await contract_for(ctx.uow.masterdata(), found.customer, asset, today)
        facts["contract"] = contract.to_dict(today) if contract is not None else facts.get("contract")
    ticket.updated_at = ctx.now
    await ctx.uow.save_ticket(ticket)
    await ctx.audit("asset_linked", {"asset_id": ticket.asset_id, "subject": ticket.subject,
                                     "key": found.asset_key}, ticket)


def asset_line(ticket: Ticket) -> str:
    facts = masterdata_of(ticket)
    asset = facts.get("asset") if isinstance(facts.get("asset"), dict) else None
    line = ticket.subject
    if asset and (asset.get("brand") or asset.get("model")):
        line += f"（{' '.join(x for x in (asset.get('brand'), asset.get('model')) if x)}）"
    warranty = facts.get("warranty")
    if isinstance(warranty, dict):
        line += f"，{'在保至' + str(warranty['end']) if warranty.get('in_warranty') else '已过保'}"
    return line


@handles(GiveAssetNumber)
async def give_asset_number(ctx: Context, cmd: GiveAssetNumber) -> Ticket | None:
    _require_customer(ctx, "设备编号")
    text = cmd.text.strip()[:64]
    if identifier_of(text) is None:
        raise InvalidInput("请在「设备编号」后写上设备编号、车牌号或 VIN，例如：设备编号 KFR-35GW/N8HR3。")
    ticket = await _newest_open(ctx, lambda t: t.asset_id is None)
    if ticket is None:
        minutes = int((await keep_pending(ctx, ctx.actor.id, asset=text)).total_seconds() // 60)
        kept = f"已记下设备编号 {text}。请接着描述故障，{minutes} 分钟内的报修会关联这台设备。"
        later = f"您目前没有进行中的工单。报修时请写明设备编号，例如：设备编号 {text} 空调不制冷。"
        await ctx.tell(ctx.actor.id, kept if minutes > 0 else later)
        return None
    person = await ctx.uow.get_person(ctx.actor.id)
    found = await recognise(ctx.uow.masterdata(), person or ctx.actor, "", text)
    await attach_asset(ctx, ticket, found)
    known = "" if found.asset is not None else "（设备档案中暂无这台设备，技师到场后会核实）"
    await ctx.tell(ctx.actor.id, f"已为工单 {ticket.number} 关联设备 {asset_line(ticket)}{known}。", ticket=ticket)
    if ticket.assignee_id:
        await ctx.tell(ticket.assignee_id, f"工单 {ticket.number} 的客户补充了设备编号：{asset_line(ticket)}。",
                       ticket=ticket)
    return ticket
