"""Making an offer: choose the best candidate, send the OFFER card, arm the expiry; or, when nobody
is left, put the ticket in the manual-dispatch queue and tell the supervisors.

The ticket keeps its dispatch state in `ticket.data["dispatch"]`:
    excluded   person ids that declined or let an offer expire (never offered this ticket again)
    offer      the open offer: card_id, person_id, name, at, expires_at, round, manual, candidate
               (the full score breakdown); None once answered, expired or withdrawn
    rounds     offers made so far
    history    [{person_id, outcome: accepted|declined|expired|withdrawn, at, reason?}]
    stalled_at set while nobody can be offered the ticket
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from core.cards import ActionStyle, Card, CardAction, CardField, CardKind, FieldKind, FieldOption
from core.dispatch.engine import DispatchPolicy, DispatchRequest, GeoPoint, RankedCandidate, SiteSource
from core.dispatch.live import live_index
from core.dispatch.store import DispatchStore
from core.errors import InvalidInput
from core.lifecycle.rework import REWORK_OFFER_NOTE, returned_for_rework
from core.masterdata.identifiers import mask_phone
from core.masterdata.org import supervisor_chain
from core.model import Person, Role, Ticket, TicketStatus
from core.service import Context

S = TicketStatus
POLICY_KIND = "dispatch"  # config_versions kind of the dispatch policy
OFFER_TIMER = "dispatch.offer_expiry"
OFFER_PREFIX = "offer"  # card ids
PICK_PREFIX = "pick"  # TASK card: a supervisor picks a technician for a ticket nobody could be offered
PICK_OPTIONS = 8
DECLINE_REASONS = (
    FieldOption("too_far", "距离太远"),
    FieldOption("too_busy", "手头工单已满"),
    FieldOption("not_qualified", "技能/资质不符"),
    FieldOption("other", "其他原因"),
)
DECLINE_LABELS = {o.value: o.label for o in DECLINE_REASONS}
MAX_REASON = 200


@dataclass(frozen=True, slots=True)
class Place:
    """Where the job is, as the technician and the audit see it."""

    text: str
    site: GeoPoint | None
    store: GeoPoint | None
    customer: str  # the customer's name and masked phone, for the offer card
    # Master-data facts for the card (asset, its last tickets, warranty/contract): (label, value).
    facts: tuple[tuple[str, str], ...] = ()


def iso(at: datetime) -> str:
    return at.isoformat()


def dispatch_state(ticket: Ticket) -> dict[str, Any]:
    state = ticket.data.get("dispatch")
    if not isinstance(state, dict):
        state = ticket.data["dispatch"] = {}
    return state


def open_offer(ticket: Ticket) -> dict[str, Any] | None:
    state = ticket.data.get("dispatch")
    offer = state.get("offer") if isinstance(state, dict) else None
    return offer if isinstance(offer, dict) else None


def excluded_ids(ticket: Ticket) -> list[str]:
    state = ticket.data.get("dispatch")
    return list(state.get("excluded") or []) if isinstance(state, dict) else []


def close_offer(ticket: Ticket, outcome: str, at: datetime, **extra: Any) -> dict[str, Any] | None:
    """Record how the open offer ended (history, exclusion) and clear it; returns it."""
    state = dispatch_state(ticket)
    offer = open_offer(ticket)
    if offer is None:
        return None
    state["offer"] = None
    state.setdefault("history", []).append({"person_id": offer["person_id"], "outcome": outcome, "at": iso(at),
                                            "round": offer.get("round"), **extra})
    if outcome in {"declined", "expired"}:
        excluded = state.setdefault("excluded", [])
        if offer["person_id"] not in excluded:
            excluded.append(offer["person_id"])
    return offer


async def current_policy(ctx: Context) -> tuple[int, DispatchPolicy]:
    """The newest saved dispatch policy (version 0 = the shipped defaults)."""
    latest = await ctx.uow.latest_config(POLICY_KIND)
    if latest is None:
        return 0, DispatchPolicy()
    return latest[0], DispatchPolicy.from_dict(latest[1])


def _point(lat: float | None, lng: float | None) -> GeoPoint | None:
    if lat is None or lng is None:
        return None
    try:
        return GeoPoint(lat, lng)
    except InvalidInput:
        return None


async def place_of(ctx: Context, ticket: Ticket, directory: DispatchStore) -> Place:
    """The site when known (shared, from the customer's address), else the ticket's store (master
    data), else the customer's store (distance fallback); with the asset facts for the card."""
    site = _point(ticket.site_lat, ticket.site_lng)
    customer = await ctx.uow.get_person(ticket.customer_id)
    store_id = ticket.store_id or (customer.store_id if customer else None)
    store = await directory.store(store_id) if store_id else None
    raw = ticket.data.get("masterdata")
    facts: dict[str, Any] = raw if isinstance(raw, dict) else {}
    address = str(facts.get("address") or "")
    if site is not None:
        text = (f"{address}（{site.lat:.5f}, {site.lng:.5f}）" if address
                else f"现场位置（{site.lat:.5f}, {site.lng:.5f}）")
    elif address:
        text = f"{address}（未定位）"
    elif store is not None:
        text = f"{store.name}" + (f"（{store.address}）" if store.address else "")
    else:
        text = "未提供（请电话联系客户确认）"
    who = customer.name if customer else ticket.customer_id
    if customer and customer.phone:
        who += f"（{mask_phone(customer.phone)}）"  # the full number only once accepted
    return Place(text, site, store.position if store else None, who, await asset_facts(ctx, ticket, facts))


async def asset_facts(ctx: Context, ticket: Ticket, facts: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    """设备 / 维修记录 / 保修 lines of the offer card, from the ticket's master-data facts."""
    out: list[tuple[str, str]] = []
    asset = facts.get("asset") if isinstance(facts.get("asset"), dict) else None
    if ticket.subject or asset:
        line = (asset or {}).get("display_id") or ticket.subject
        kind = " ".join(str(x) for x in ((asset or {}).get("brand"), (asset or {}).get("model")) if x)
        out.append(("设备", f"{line}｜{kind}" if kind else str(line)))
    if ticket.asset_id:
        earlier = [t for t in await ctx.uow.masterdata().recent_tickets_of_asset(ticket.asset_id, limit=4)
                   if t.number != ticket.number][:3]
        tz = ctx.config.timezone
        out.append(("维修记录", "；".join(
            f"{t.number} {t.created_at.astimezone(tz):%Y-%m-%d} {t.category or '待分诊'} {t.status.label}"
            for t in earlier) or "无"))
    status = []
    warranty = facts.get("warranty")
    if isinstance(warranty, dict) and warranty.get("end"):
        status.append(f"在保至{warranty['end']}" if warranty.get("in_warranty") else "已过保")
    contract = facts.get("contract")
    if isinstance(contract, dict) and contract.get("number"):
        status.append(f"合同 {contract['number']} " + (f"有效至{contract.get('valid_to')}" if contract.get("valid")
                                                      else f"已于{contract.get('valid_to')}到期"))
    if status:
        out.append(("保修/合同", "｜".join(status)))
    return tuple(out)


def request_for(ticket: Ticket, place: Place, *, excluded: bool = True) -> DispatchRequest:
    return DispatchRequest(
        ticket_number=ticket.number,
        category=ticket.category or "",
        site=place.site,
        store=place.store,
        excluded_person_ids=(frozenset(excluded_ids(ticket)) if excluded else frozenset()) | left_ids(ticket),
    )


def left_ids(ticket: Ticket) -> frozenset[str]:
    """Technicians deactivated while holding this ticket (core/dispatch/release.py): never offered it again,
    not even when a supervisor overrides the declines (the candidate index learns of them only later)."""
    state = ticket.data.get("dispatch")
    return frozenset(state.get("left") or []) if isinstance(state, dict) else frozenset()


def tech_label(name: str) -> str:
    """How customers see a technician: 技师 王强 (demo names already carry the title)."""
    return name if name.startswith("技师") else f"技师 {name}"


def score_line(candidate: RankedCandidate) -> str:
    parts = "｜".join(f"{c.label} {c.normalised:.2f}×{c.weight:.0%}" for c in candidate.components)
    return f"得分 {candidate.score:.3f}：{parts}"


def distance_text(candidate: RankedCandidate) -> str:
    if candidate.distance_km is None:
        return ""
    where = "您" if candidate.site_source is SiteSource.SITE else "门店"
    return f"距{where}约 {candidate.distance_km:.1f} 公里"


def offer_distance(candidate: RankedCandidate) -> str:
    """The technician's distance to the job, when both positions are known ("距您 3.2 公里")."""
    if candidate.distance_km is None or candidate.position_used is None:
        return ""
    if candidate.site_source is SiteSource.SITE:
        return f"距您 {candidate.distance_km:.1f} 公里"
    return f"距门店 {candidate.distance_km:.1f} 公里（现场位置未知）"


def offer_card(card_id: str, ticket: Ticket, candidate: RankedCandidate, place: Place, expires_local: str,
               note: str = "") -> Card:
    return Card(
        id=card_id,
        kind=CardKind.OFFER,
        title=f"新派单：{ticket.number}",
        ticket_number=ticket.number,
        facts=(
            ("故障", ticket.description[:60]),
            ("客户", place.customer),
            ("地点", place.text),
            ("分类", ticket.category or "—"),
            ("优先级", f"{ticket.priority}｜{ticket.impact}"),
            # Master data (issue 20); WeCom shows six facts, the rest go to the card's text.
            *((("距离", distance),) if (distance := offer_distance(candidate)) else ()),
            *place.facts,
            ("为什么派给您", score_line(candidate)),
            ("接单时限", f"{expires_local} 前"),
        ),
        body=(note + "\n" if note else "") + candidate.why
        + "\n请点「接单」；不能接请选择原因后点「拒单」（或回复「拒单 工单号 原因」）。",
        actions=(CardAction("accept", "接单", ActionStyle.PRIMARY), CardAction("decline", "拒单", ActionStyle.DANGER)),
        fields=(CardField("reason", "拒单原因", FieldKind.SELECT, options=DECLINE_REASONS,
                          placeholder="拒单时请选择原因"),),
        urgent=ticket.priority == "紧急",
    )


async def person_name(ctx: Context, person_id: str | None) -> str:
    if not person_id:
        return "—"
    person = await ctx.uow.get_person(person_id)
    return person.name if person else person_id


async def supervisors_of(ctx: Context, person_id: str | None, ticket: Ticket | None = None) -> list[Person]:
    """A technician's direct supervisor, else the ticket's store's supervisors, else every supervisor
    (core/masterdata/org.py `supervisor_chain`)."""
    if person_id is None and ticket is None:
        return await ctx.uow.list_people(Role.SUPERVISOR)
    return await supervisor_chain(ctx, ticket, person_id or None)


async def offer_next(ctx: Context, ticket: Ticket, *, trigger: str) -> RankedCandidate | None:
    """Offer the ticket to the best eligible technician; nobody left → the manual-dispatch queue.
    Automatic dispatch is the system's step, caused by whoever's move (or timer) triggered it."""
    with ctx.as_system():
        return await _offer_next(ctx, ticket, trigger=trigger)


async def _offer_next(ctx: Context, ticket: Ticket, *, trigger: str) -> RankedCandidate | None:
    directory = ctx.uow.dispatch_store()
    place = await place_of(ctx, ticket, directory)
    request = request_for(ticket, place)
    version, policy, ranked = await live_index(ctx.service).rank(directory, request, lambda: current_policy(ctx),
                                                                 ctx.now, limit=1)
    if not ranked:
        await stall(ctx, ticket, place, version, trigger=trigger)
        return None
    await send_offer(ctx, ticket, ranked[0], place=place, policy=policy, version=version, trigger=trigger)
    return ranked[0]


async def send_offer(ctx: Context, ticket: Ticket, candidate: RankedCandidate, *, place: Place,
                     policy: DispatchPolicy, version: int, trigger: str, manual: dict[str, Any] | None = None) -> None:
    """Offer `ticket` to `candidate`: assignee, 已派单, OFFER card, expiry timer, audit, the customer told."""
    state = dispatch_state(ticket)
    card_id = ctx.new_card_id(OFFER_PREFIX)
    expires = ctx.now + timedelta(seconds=policy.offer_timeout_s)
    state["rounds"] = int(state.get("rounds", 0)) + 1
    state["offer"] = {
        "card_id": card_id, "person_id": candidate.person_id, "name": candidate.name, "at": iso(ctx.now),
        "expires_at": iso(expires), "round": state["rounds"], "manual": manual is not None,
        "candidate": candidate.to_dict(),
    }
    state.pop("stalled_at", None)
    ticket.assignee_id = candidate.person_id
    # first_response_at is not set here: queued is not received. Storage records it when the OFFER
    # card is delivered to the technician's chat (storage/outbox.py).
    ticket.updated_at = ctx.now
    if ticket.status is S.DISPATCHED:
        await ctx.uow.save_ticket(ticket)  # a manual reassignment already moved it
    else:
        await ctx.move(ticket, "dispatch", as_system=True, payload={"assignee": candidate.person_id,
                                                                   "trigger": trigger})
    expires_local = expires.astimezone(ctx.config.timezone).strftime("%H:%M")
    rework = returned_for_rework(ticket, candidate.person_id, ctx.now)  # back to who did it: not a reassignment
    note = REWORK_OFFER_NOTE if rework else f"主管转派：{manual.get('reason') or '人工指定'}" if manual else ""
    card = offer_card(card_id, ticket, candidate, place, expires_local, note)
    minutes = policy.offer_timeout_s / 60
    await ctx.send_card(candidate.person_id, card,
                        text=f"您有新的派单 {ticket.number}（{ticket.category}），请在 {minutes:g} 分钟内"
                             f"（{expires_local} 前）点「接单」或「拒单」。")
    await ctx.uow.schedule_timer(kind=OFFER_TIMER, ticket_number=ticket.number, due_at=expires,
                                 payload={"card_id": card_id, "person_id": candidate.person_id})
    payload: dict[str, Any] = {
        "card_id": card_id, "person_id": candidate.person_id, "round": state["rounds"], "trigger": trigger,
        "expires_at": iso(expires), "policy_version": version, "weights": policy.weights.to_dict(),
        "excluded": excluded_ids(ticket), "candidate": candidate.to_dict(),
    }
    if manual is not None:
        payload.update(manual)
    await ctx.audit("offer_reassigned" if manual is not None else "offer_sent", payload, ticket)
    distance = distance_text(candidate)
    who = tech_label(candidate.name) + (f"（{distance}）" if distance else "")
    if rework:
        text = f"您的工单 {ticket.number} 已退回给上次检修的{who}返修，正在等待技师确认接单。"
    elif trigger in {"declined", "expired"} or manual is not None:
        text = f"您的工单 {ticket.number} 已改派给{who}，正在等待技师确认接单。"
    else:
        text = f"已为您的工单 {ticket.number} 安排{who}，正在等待技师确认接单。"
    await ctx.tell(ticket.customer_id, text, ticket=ticket)


async def stall(ctx: Context, ticket: Ticket, place: Place, version: int, *, trigger: str) -> None:
    """Nobody eligible is left: the ticket waits in 待派单 and the supervisors pick someone."""
    state = dispatch_state(ticket)
    state["stalled_at"] = iso(ctx.now)
    previous = (state.get("history") or [{}])[-1].get("person_id")
    ticket.assignee_id = None
    ticket.updated_at = ctx.now
    await ctx.uow.save_ticket(ticket)
    await ctx.uow.cancel_timers(ticket.number, {OFFER_TIMER})
    excluded = excluded_ids(ticket)
    choices: list[RankedCandidate] = []
    if excluded:
        # Who could still do it if a supervisor overrides the declines/expiries (hard filters still apply).
        # With nobody excluded that is the ranking that just came back empty: no second ranking.
        _, _, choices = await live_index(ctx.service).rank(ctx.uow.dispatch_store(),
                                                           request_for(ticket, place, excluded=False),
                                                           lambda: current_policy(ctx), ctx.now, limit=PICK_OPTIONS)
    names = [await person_name(ctx, pid) for pid in excluded]
    await ctx.audit("dispatch_stalled", {"trigger": trigger, "category": ticket.category, "excluded": excluded,
                                         "policy_version": version,
                                         "choices": [c.to_dict() for c in choices]}, ticket)
    facts = (("分类", ticket.category or "—"), ("故障", ticket.description[:60]), ("地点", place.text),
             ("已拒单/超时", "、".join(names) or "无"))
    hint = f"也可以发送「转派 {ticket.number} 工号」指定任意技师；发送「测试派单 {ticket.number}」查看排除原因。"
    for boss in await supervisors_of(ctx, previous, ticket):
        await ctx.send_card(boss.id, pick_card(ctx.new_card_id(PICK_PREFIX), ticket, facts, choices, hint))
    await ctx.tell(ticket.customer_id, f"您的工单 {ticket.number} 暂时没有可以接单的技师，已通知主管人工安排，请稍候。",
                   ticket=ticket)


def pick_card(card_id: str, ticket: Ticket, facts: tuple[tuple[str, str], ...], choices: list[RankedCandidate],
              hint: str) -> Card:
    title = f"无人可派，请人工派单：{ticket.number}"
    if not choices:
        return Card(id=card_id, kind=CardKind.INFO, title=title, ticket_number=ticket.number, facts=facts,
                    body="没有在岗、未满负荷且具备资质的技师。请安排技师在岗或调整派单规则。" + hint, urgent=True)
    return Card(
        id=card_id, kind=CardKind.TASK, title=title, ticket_number=ticket.number, facts=facts,
        body="没有符合条件且未拒单的技师。请选择一位技师后点「派单」。" + hint,
        fields=(CardField("technician", "派给", FieldKind.SELECT, required=True,
                          options=tuple(FieldOption(c.person_id, f"{c.name}（{c.score:.2f}）") for c in choices)),),
        actions=(CardAction("assign", "派单", ActionStyle.PRIMARY),),
        urgent=True,
    )
