"""Change linkage: when an asset's warranty or a contract's validity passes or changes, the people
concerned are told and the open tickets' facts follow.

Rules are data (config kind "linkage", versioned like the other rules; both on by default), listed
and switched by admins with `联动 …` (bot/chat/org.py):

  * warranty_expiry (过保): an asset's warranty end passed (the day after it) or was changed;
  * contract_expiry (合同到期): a contract's last valid day passed or its validity was changed.

What a firing rule does:
  * the asset's store supervisors get one INFO card (the assets, old → new date, open tickets);
    without a store, the customer's store; with neither, every supervisor (the last resort of
    core/masterdata/org.py);
  * every open ticket of the asset gets its facts re-read from master data (ticket.data["masterdata"]
    "warranty" / "contract") by a ticket timer — that timer locks the ticket before the audit head
    (core/timers.py's lock order), which a run over many assets could not; when an open ticket's
    asset goes out of warranty its customer hears "该设备已过保，本次服务将按标准收费". Rows of
    TICKET_KIND are written only here (whoever holds the audit head: the daily run, an import batch)
    and claimed by FireTimer after the ticket and the head, so writing them without the ticket's lock
    cannot deadlock.

Triggers: a daily durable timer (DAILY_KIND, no ticket; it re-arms itself and remembers the last day
it covered, so a day missed while the service was down is covered by the next run) and, at once, an
import or admin change that moves a date: the import calls `on_asset_changed` / `on_contract_changed`
after each upsert, in the row's unit of work.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from core.cards import Card, CardKind
from core.errors import InvalidInput
from core.masterdata.model import AssetRecord, ContractRecord
from core.masterdata.org import store_supervisors
from core.masterdata.prefill import MASTERDATA, contract_for, warranty_of
from core.model import Person, Role, Ticket
from core.service import Context, handles
from core.timers import timer_handler

LINKAGE_KIND = "linkage"  # config kind: {"rules": {rule: enabled}}
DAILY_KIND = "masterdata.linkage_daily"
TICKET_KIND = "masterdata.linkage_ticket"
OUT_OF_WARRANTY_TEXT = "该设备已过保，本次服务将按标准收费"
OPEN_TICKETS_SCANNED = 100  # newest tickets of one asset read to find the open ones
CARD_LINES = 20


@dataclass(frozen=True, slots=True)
class LinkageRule:
    code: str
    name: str
    description: str


RULES: dict[str, LinkageRule] = {
    "warranty_expiry": LinkageRule(
        "warranty_expiry", "过保提醒",
        "设备保修到期或保修截止日被修改时：通知设备所属门店主管，更新未结工单的保修状态；"
        f"在修设备过保时告知客户「{OUT_OF_WARRANTY_TEXT}」"),
    "contract_expiry": LinkageRule(
        "contract_expiry", "合同到期提醒",
        "服务合同到期或有效期被修改时：通知相关门店主管，更新所涉设备未结工单的合同状态"),
}
ALIASES = {"过保": "warranty_expiry", "过保提醒": "warranty_expiry", "保修": "warranty_expiry",
           "合同": "contract_expiry", "合同到期": "contract_expiry", "合同到期提醒": "contract_expiry"}


# --- commands --------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ListLinkageRules:
    pass


@dataclass(frozen=True, slots=True)
class SetLinkageRule:
    rule: str  # a code of RULES or an alias
    enabled: bool


@dataclass(frozen=True, slots=True)
class ShowLinkageHistory:
    pass


@dataclass(frozen=True, slots=True)
class CheckLinkage:
    """Run the daily check now (what it covered is not checked again by the timer)."""


# --- the rules as stored -----------------------------------------------------------------------

async def current_rules(ctx: Context) -> tuple[int, dict[str, bool]]:
    latest = await ctx.uow.latest_config(LINKAGE_KIND)
    stored = latest[1].get("rules", {}) if latest else {}
    return (latest[0] if latest else 0), {code: bool(stored.get(code, True)) for code in RULES}


async def rule_enabled(ctx: Context, code: str) -> bool:
    return (await current_rules(ctx))[1][code]


def _rule_code(text: str) -> str:
    code = ALIASES.get(text.strip(), text.strip().lower())
    if code not in RULES:
        known = "、".join(f"{r.code}（{r.name}）" for r in RULES.values())
        raise InvalidInput(f"没有联动规则「{text}」。可用：{known}。")
    return code


@handles(ListLinkageRules)
async def list_linkage_rules(ctx: Context, _cmd: ListLinkageRules) -> dict[str, bool]:
    ctx.require_role(Role.ADMIN)
    version, rules = await current_rules(ctx)
    await ensure_daily_linkage(ctx)
    lines = [f"{'✅' if rules[r.code] else '⛔'} {r.code}（{r.name}）：{'启用' if rules[r.code] else '停用'}\n"
             f"    {r.description}" for r in RULES.values()]
    timer = await ctx.uow.get_timer(DAILY_KIND, None)
    after = (f"\n下次每日检查：{timer.due_at.astimezone(ctx.config.timezone):%m-%d %H:%M}"
             if timer is not None and timer.state == "pending" else "")
    await ctx.tell(ctx.actor.id, f"联动规则（{'出厂默认' if version == 0 else f'v{version}'}）：\n" + "\n".join(lines)
                   + after + "\n开关：联动 启用/停用 规则｜联动 历史｜联动 检查")
    return rules


@handles(SetLinkageRule)
async def set_linkage_rule(ctx: Context, cmd: SetLinkageRule) -> int:
    ctx.require_role(Role.ADMIN)
    code = _rule_code(cmd.rule)
    version, rules = await current_rules(ctx)
    word = "启用" if cmd.enabled else "停用"
    if rules[code] == cmd.enabled:
        raise InvalidInput(f"联动规则 {code}（{RULES[code].name}）已经是{word}状态。")
    rules = {**rules, code: cmd.enabled}
    note = f"{word} {code}（{RULES[code].name}）"
    new_version = await ctx.uow.save_config(LINKAGE_KIND, {"rules": rules}, actor_id=ctx.actor.id, note=note,
                                            at=ctx.now, based_on=version)
    await ctx.audit("config_changed", {"kind": LINKAGE_KIND, "version": new_version, "previous_version": version,
                                       "note": note, "rule": code, "enabled": cmd.enabled})
    await ensure_daily_linkage(ctx)
    await ctx.tell(ctx.actor.id, f"已{word}联动规则 {code}（{RULES[code].name}），保存为 v{new_version}。"
                                 "查看历史：联动 历史")
    return new_version


@handles(ShowLinkageHistory)
async def show_linkage_history(ctx: Context, _cmd: ShowLinkageHistory) -> list[dict[str, Any]]:
    ctx.require_role(Role.ADMIN)
    rows = await ctx.uow.config_history(LINKAGE_KIND)
    if not rows:
        await ctx.tell(ctx.actor.id, "联动规则还没有修改过（出厂默认：全部启用）。")
        return []
    lines = [f"v{r['version']}｜{datetime.fromisoformat(r['created_at']).astimezone(ctx.config.timezone):%m-%d %H:%M}"
             f"｜{r['actor_id']}｜{r['note']}" for r in rows]
    await ctx.tell(ctx.actor.id, "联动规则历史（新→旧）：\n" + "\n".join(lines))
    return rows


@handles(CheckLinkage)
async def check_linkage(ctx: Context, _cmd: CheckLinkage) -> int:
    ctx.require_role(Role.ADMIN)
    found = await _daily_run(ctx)
    await ctx.tell(ctx.actor.id, f"联动检查完成：{found} 项过保/合同到期已处理（已通知门店主管并更新未结工单）。"
                   if found else "联动检查完成：自上次检查以来没有设备过保或合同到期。")
    return found


# --- triggers ----------------------------------------------------------------------------------

def _today(ctx: Context) -> date:
    return ctx.now.astimezone(ctx.config.timezone).date()


def next_run_at(ctx: Context, after: datetime) -> datetime:
    """The next daily run: the SLA's daily check hour (local), like the calendar watch."""
    zone = ctx.config.timezone
    local = after.astimezone(zone)
    hour = time(ctx.config.sla.daily_check_hour)
    candidate = datetime.combine(local.date(), hour, tzinfo=zone)
    if candidate <= local:
        candidate = datetime.combine(local.date() + timedelta(days=1), hour, tzinfo=zone)
    return candidate.astimezone(after.tzinfo)


# Units of work that already armed the daily timer (an import calls on_asset_changed per row).
_armed: weakref.WeakSet[Any] = weakref.WeakSet()


async def ensure_daily_linkage(ctx: Context) -> None:
    """Arm the daily timer unless it is pending (master data arriving is what makes it worth running)."""
    if ctx.uow in _armed:
        return
    timer = await ctx.uow.get_timer(DAILY_KIND, None)
    if timer is None or timer.state != "pending":
        await ctx.uow.schedule_timer(kind=DAILY_KIND, ticket_number=None, due_at=next_run_at(ctx, ctx.now),
                                     payload={"covered_to": (_today(ctx) - timedelta(days=1)).isoformat()})
    _armed.add(ctx.uow)


async def on_asset_changed(ctx: Context, before: AssetRecord | None, after: AssetRecord) -> None:
    """An import or admin saved `after` (`before`: as it was, None when new). A moved warranty end
    fires warranty_expiry at once; a new asset only arms the daily check."""
    await ensure_daily_linkage(ctx)
    if before is None or before.warranty_end == after.warranty_end:
        return
    if not await rule_enabled(ctx, "warranty_expiry"):
        return
    today = _today(ctx)
    line = (f"{_asset_label(after)}：保修截止 {_day(before.warranty_end)} → {_day(after.warranty_end)}"
            f"（{_warranty_word(after, today)}）")
    await _fire(ctx, "warranty_expiry", "保修截止日已修改", [(after, line)])


async def on_contract_changed(ctx: Context, before: ContractRecord | None, after: ContractRecord) -> None:
    """A contract saved by an import or admin: a moved validity fires contract_expiry at once."""
    await ensure_daily_linkage(ctx)
    if before is None or (before.valid_from, before.valid_to) == (after.valid_from, after.valid_to):
        return
    if not await rule_enabled(ctx, "contract_expiry"):
        return
    today = _today(ctx)
    state = "有效" if after.valid_on(today) else "已失效"
    line = (f"合同 {after.number}（{after.level}）：有效期 {before.valid_from}~{before.valid_to} → "
            f"{after.valid_from}~{after.valid_to}（{state}）")
    await _fire(ctx, "contract_expiry", "服务合同有效期已修改", await _contract_assets(ctx, after, line),
                customer_id=after.customer_id)


@timer_handler(DAILY_KIND)
async def _daily(ctx: Context, _ticket: Ticket | None, payload: dict[str, Any]) -> None:
    with ctx.as_system(cause=f"timer:{DAILY_KIND}"):
        await _daily_run(ctx, payload)


async def _daily_run(ctx: Context, payload: dict[str, Any] | None = None) -> int:
    """Everything that passed since the last covered day, up to yesterday; then re-arm for tomorrow."""
    if payload is None:
        timer = await ctx.uow.get_timer(DAILY_KIND, None)
        payload = timer.payload if timer is not None and timer.state == "pending" else {}
    today = _today(ctx)
    yesterday = today - timedelta(days=1)
    covered = date.fromisoformat(payload["covered_to"]) if payload.get("covered_to") else yesterday - timedelta(1)
    start = covered + timedelta(days=1)
    found = 0
    if start <= yesterday:
        _, rules = await current_rules(ctx)
        md = ctx.uow.masterdata()
        if rules["warranty_expiry"]:
            ended = await md.assets_with_warranty_ending(start, yesterday)
            found += len(ended)
            await _fire(ctx, "warranty_expiry", "设备已过保",
                        [(a, f"{_asset_label(a)}：保修已于 {_day(a.warranty_end)} 到期") for a in ended])
        if rules["contract_expiry"]:
            for contract in await md.contracts_ending(start, yesterday):
                found += 1
                line = f"合同 {contract.number}（{contract.level}）已于 {contract.valid_to} 到期"
                await _fire(ctx, "contract_expiry", "服务合同已到期", await _contract_assets(ctx, contract, line),
                            customer_id=contract.customer_id)
    await ctx.uow.schedule_timer(kind=DAILY_KIND, ticket_number=None, due_at=next_run_at(ctx, ctx.now),
                                 payload={"covered_to": max(covered, yesterday).isoformat()})
    if found:
        await ctx.audit("masterdata_linkage_run", {"from": start.isoformat(), "to": yesterday.isoformat(),
                                                   "found": found})
    return found


# --- what a firing rule does ---------------------------------------------------------------------

def _day(value: date | None) -> str:
    return value.isoformat() if value else "未设置"


def _warranty_word(asset: AssetRecord, today: date) -> str:
    state = asset.in_warranty(today)
    return "保修期未知" if state is None else "在保" if state else "已过保"


def _asset_label(asset: AssetRecord) -> str:
    what = " ".join(x for x in (asset.brand, asset.model) if x)
    return f"设备 {asset.display_id or asset.key()}" + (f"（{what}）" if what else "")


async def _contract_assets(ctx: Context, contract: ContractRecord, line: str) -> list[tuple[AssetRecord | None, str]]:
    md = ctx.uow.masterdata()
    assets = [a for a in [await md.get_asset(i) for i in contract.asset_ids] if a is not None]
    return [(a, line) for a in assets] or [(None, line)]


async def _open_tickets(ctx: Context, asset_id: str) -> list[Ticket]:
    recent = await ctx.uow.masterdata().recent_tickets_of_asset(asset_id, limit=OPEN_TICKETS_SCANNED)
    return [t for t in recent if t.status.is_open]


async def _recipients(ctx: Context, asset: AssetRecord | None, customer_id: str | None,
                      known: dict[str | None, list[Person]]) -> list[Person]:
    """The supervisors of the asset's store, else of its customer's store, else every supervisor;
    `known`: by store, for one run (a day may end many warranties of one store)."""
    store = asset.store_code if asset is not None else None
    if store is None:
        owner = (asset.customer_id if asset is not None else None) or customer_id
        customer = await ctx.uow.masterdata().get_customer(owner) if owner else None
        store = customer.store_code if customer is not None else None
    if store not in known:
        known[store] = await store_supervisors(ctx, store) or await ctx.uow.list_people(Role.SUPERVISOR)
    return known[store]


async def _fire(ctx: Context, rule: str, title: str, items: list[tuple[AssetRecord | None, str]], *,
                customer_id: str | None = None) -> None:
    """Tell each asset's store supervisors (one card per person) and have the open tickets re-read."""
    by_person: dict[str, list[str]] = {}
    tickets: list[str] = []
    known: dict[str | None, list[Person]] = {}
    for asset, line in items:
        numbers = [t.number for t in await _open_tickets(ctx, asset.id)] if asset is not None else []
        for number in numbers:
            await ctx.uow.schedule_timer(kind=TICKET_KIND, ticket_number=number, due_at=ctx.now,
                                         payload={"rule": rule, "asset_id": asset.id if asset else None})
        tickets += numbers
        text = line + (f"；未结工单：{'、'.join(numbers)}" if numbers else "")
        for person in await _recipients(ctx, asset, customer_id, known):
            by_person.setdefault(person.id, []).append(text)
    for person_id, lines in by_person.items():
        shown = lines[:CARD_LINES] + ([f"……另有 {len(lines) - CARD_LINES} 项"] if len(lines) > CARD_LINES else [])
        card = Card(id=ctx.new_card_id("link"), kind=CardKind.INFO, title=f"{title}（{len(lines)} 项）",
                    facts=(("联动规则", f"{rule}（{RULES[rule].name}）"),), body="\n".join(shown))
        await ctx.send_card(person_id, card)
    if items:
        await ctx.audit("masterdata_linkage_fired", {
            "rule": rule, "assets": [a.id for a, _ in items if a is not None][:200], "tickets": tickets[:200],
            "told": sorted(by_person)})


@timer_handler(TICKET_KIND)
async def _refresh_ticket(ctx: Context, ticket: Ticket | None, payload: dict[str, Any]) -> None:
    with ctx.as_system(cause=f"timer:{TICKET_KIND}"):
        await refresh_ticket_facts(ctx, ticket)


async def refresh_ticket_facts(ctx: Context, ticket: Ticket | None) -> bool:
    """Re-read an open ticket's warranty and contract from master data (the rules that are on);
    True when they changed. The customer hears when their asset went out of warranty."""
    if ticket is None or not ticket.status.is_open or not ticket.asset_id:
        return False
    md = ctx.uow.masterdata()
    asset = await md.get_asset(ticket.asset_id)
    if asset is None:
        return False
    _, rules = await current_rules(ctx)
    today = _today(ctx)
    facts = ticket.data.get(MASTERDATA)
    facts = dict(facts) if isinstance(facts, dict) else {}
    before = {"warranty": facts.get("warranty"), "contract": facts.get("contract")}
    if rules["warranty_expiry"]:
        facts["warranty"] = warranty_of(asset, today)
    if rules["contract_expiry"]:
        snapshot = facts.get("customer")
        said = snapshot.get("id") if isinstance(snapshot, dict) else None
        customer = await md.get_customer(str(said or asset.customer_id or ticket.customer_id))
        contract = await contract_for(md, customer, asset, today)
        facts["contract"] = contract.to_dict(today) if contract is not None else None
    after = {"warranty": facts.get("warranty"), "contract": facts.get("contract")}
    if after == before:
        return False
    ticket.data[MASTERDATA] = facts
    await ctx.uow.save_ticket(ticket)
    await ctx.audit("masterdata_facts_updated", {"before": before, "after": after}, ticket)
    old_warranty, new_warranty = before["warranty"], after["warranty"]
    was = old_warranty.get("in_warranty") if isinstance(old_warranty, dict) else None
    if isinstance(new_warranty, dict) and new_warranty.get("in_warranty") is False and was is not False:
        await ctx.tell(ticket.customer_id, f"您的工单 {ticket.number}：{OUT_OF_WARRANTY_TEXT}。如有疑问请联系门店。",
                       ticket=ticket)
        if ticket.assignee_id:
            await ctx.tell(ticket.assignee_id, f"工单 {ticket.number} 的设备已过保（保修截止 "
                                               f"{new_warranty['end']}），本次服务按标准收费。", ticket=ticket)
    return True
