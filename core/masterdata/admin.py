"""Stores and people administered in chat (`门店 …`, `人员 …`), admins only.

The same safety as the classification rules (bot/rules/admin.py) and the dispatch rules:

  * every change shows what it changes (before → after) and what follows from it (open jobs that go
    back to dispatch, people whose escalations move, the last admin …);
  * `… 试运行` at the end of a change only shows that, and changes nothing;
  * a high-risk change — deactivating a store or a person, changing an existing person's role, or a
    rollback that does either — waits per admin (config kind "org_pending:<hash>") until 确认 / 取消,
    for at most 15 minutes; 确认 applies it to the records as they are then;
  * every applied change is a version of config kind "org" ({entity, key, action, before, after}) and
    an "org_changed" audit event; `门店 历史` / `人员 历史 [ID]` list them, `… 回滚 <版本>` undoes one
    (restores the record as it was before that version, itself a new version: history is never rewritten).

Changing a person tells the other capabilities through core/masterdata/events.py: a technician who is
deactivated (or stops being one) has their open jobs sent back to dispatch (core/dispatch/release.py),
the same as the directory sync does for people who left.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from core.errors import InvalidInput, NotAllowed, NotFound
from core.masterdata.events import person_changed
from core.masterdata.identifiers import mask_phone, normalise_phone
from core.masterdata.model import StoreRecord
from core.model import ROLE_LABELS, Person, Role, TicketStatus
from core.pending_changes import pending_change as shared_pending_change
from core.pending_changes import pending_kind as shared_pending_kind
from core.service import Context, handles

ORG_KIND = "org"
PENDING_PREFIX = "org_pending:"  # + 16 hex digits: fits config_versions.kind (32 characters)
PENDING_TTL = timedelta(minutes=15)
HISTORY_SHOWN = 15
LISTED = 50
MAX_NAME = 64
MAX_TEXT = 200
CODE = re.compile(r"^[\w.@:\-]{1,64}$")
ENTITY_LABELS = {"store": "门店", "person": "人员"}
ACTION_LABELS = {"add": "新增", "update": "修改", "deactivate": "停用", "activate": "启用", "rollback": "回滚"}
# What admins type for a role (the labels of core.model.ROLE_LABELS work too). Customers are master
# data of their own (`ticketbot import customers`), not staff.
ROLE_WORDS: dict[str, Role] = {
    "主管": Role.SUPERVISOR, "技师": Role.TECHNICIAN, "管理员": Role.ADMIN, "仓库": Role.WAREHOUSE,
    "仓管": Role.WAREHOUSE, "质检": Role.QUALITY, "专家": Role.EXPERT, "前台": Role.FRONT_DESK,
    **{label: role for role, label in ROLE_LABELS.items() if role is not Role.CUSTOMER},
    **{role.value: role for role in Role if role is not Role.CUSTOMER},
}
BOSS_ROLES = frozenset({Role.SUPERVISOR, Role.ADMIN})
PLATFORMS = {"wecom": "企业微信", "dingtalk": "钉钉", "feishu": "飞书"}
STORE_FIELDS = {"name": "名称", "address": "地址", "position": "坐标", "opening_hours": "营业时间", "phone": "电话"}
PERSON_FIELDS = {"name": "姓名", "role": "角色", "store": "门店", "team": "班组", "supervisor": "上级",
                 "phone": "手机", **PLATFORMS}
OPEN_STATES = frozenset(s for s in TicketStatus if s.is_open)
# Jobs a leaving technician's replacement takes over at once (core/dispatch/release.py REASSIGNABLE).
ACTIVE_JOB_STATES = frozenset({TicketStatus.DISPATCHED, TicketStatus.ACCEPTED, TicketStatus.CHECKED_IN,
                               TicketStatus.IN_PROGRESS, TicketStatus.REOPENED})


# --- commands --------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class OrgChange:
    """新增 / 修改 / 停用 / 启用 / 回滚 of a store or a person. `fields`: (key of STORE_FIELDS or
    PERSON_FIELDS, the value as typed; "" or 无 clears) — validated here, so a pending change can be
    re-checked when it is confirmed."""

    entity: str  # "store" | "person"
    key: str  # store code or person id ("" for a rollback: the version names it)
    action: str  # add | update | deactivate | activate | rollback
    fields: tuple[tuple[str, str], ...] = ()
    dry_run: bool = False
    version: int | None = None  # rollback: the history version to undo

    def to_dict(self) -> dict[str, Any]:
        return {"entity": self.entity, "key": self.key, "action": self.action, "fields": [list(f) for f in self.fields],
                "version": self.version}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OrgChange:
        return cls(entity=data["entity"], key=data["key"], action=data["action"],
                   fields=tuple((str(k), str(v)) for k, v in data.get("fields") or []), version=data.get("version"))


@dataclass(frozen=True, slots=True)
class ListStores:
    pass


@dataclass(frozen=True, slots=True)
class ShowStore:
    code: str


@dataclass(frozen=True, slots=True)
class ListPeople:
    role: Role | None = None


@dataclass(frozen=True, slots=True)
class ShowPerson:
    person_id: str


@dataclass(frozen=True, slots=True)
class OrgHistory:
    entity: str
    key: str | None = None


@dataclass(frozen=True, slots=True)
class ConfirmOrgChange:
    pass


@dataclass(frozen=True, slots=True)
class CancelOrgChange:
    pass


@dataclass(frozen=True, slots=True)
class OrgOutcome:
    """What a change did: "applied" (with the history version), "pending", "dry_run" or "unchanged"."""

    state: str
    version: int | None = None
    text: str = ""


# --- snapshots: what a record is, as stored in the history ---------------------------------------

Snapshot = dict[str, Any]


def store_snapshot(store: StoreRecord) -> Snapshot:
    return {"code": store.code, "name": store.name, "address": store.address, "lat": store.lat, "lng": store.lng,
            "opening_hours": store.opening_hours, "phone": store.phone, "active": store.active}


def _store_from(snapshot: Snapshot) -> StoreRecord:
    return StoreRecord(code=snapshot["code"], name=snapshot["name"], address=snapshot.get("address") or "",
                       lat=snapshot.get("lat"), lng=snapshot.get("lng"),
                       opening_hours=snapshot.get("opening_hours") or "", phone=snapshot.get("phone") or "",
                       active=bool(snapshot.get("active", True)))


def person_snapshot(person: Person, team: str | None) -> Snapshot:
    return {"id": person.id, "name": person.name, "role": person.role.value, "phone": person.phone,
            "store_id": person.store_id, "supervisor_id": person.supervisor_id, "team": team,
            "active": person.active}


def _person_from(snapshot: Snapshot, base: Person | None) -> Person:
    person = base or Person(id=snapshot["id"], name=snapshot["name"], role=Role(snapshot["role"]))
    return replace(person, name=snapshot["name"], role=Role(snapshot["role"]), phone=snapshot.get("phone"),
                   store_id=snapshot.get("store_id"), supervisor_id=snapshot.get("supervisor_id"),
                   active=bool(snapshot.get("active", True)))


def _show(value: Any) -> str:
    if value is None or value == "":
        return "—"
    if isinstance(value, bool):
        return "启用" if value else "停用"
    return str(value)


STORE_LABELS = {"name": "名称", "address": "地址", "lat": "纬度", "lng": "经度", "opening_hours": "营业时间",
                "phone": "电话", "active": "状态"}
PERSON_LABELS = {"name": "姓名", "role": "角色", "phone": "手机", "store_id": "门店", "team": "班组",
                 "supervisor_id": "上级", "active": "状态"}


def diff_lines(entity: str, before: Snapshot | None, after: Snapshot) -> list[str]:
    labels = STORE_LABELS if entity == "store" else PERSON_LABELS
    lines = []
    for key, label in labels.items():
        old, new = (before or {}).get(key), after.get(key)
        if before is not None and old == new:
            continue
        if before is None and (new is None or new == "" or key == "active"):
            continue
        if key == "role":
            old, new = (ROLE_LABELS[Role(v)] if v else None for v in (old, new))
        if key == "phone" and entity == "person":
            old, new = (mask_phone(v) if v else None for v in (old, new))
        lines.append(f"{label}：{_show(new)}" if before is None else f"{label}：{_show(old)} → {_show(new)}")
    return lines


# --- validation: the record after a change, or every problem with it -------------------------------

def _cleared(value: str) -> bool:
    return value.strip() in {"", "无", "-", "—"}


def _position(value: str) -> tuple[float, float]:
    parts = [p for p in re.split(r"[,，\s]+", value.strip()) if p]
    try:
        lat, lng = (float(p) for p in parts)
    except ValueError:
        raise InvalidInput(f"坐标请写成 纬度,经度，例如 坐标=31.23,121.47：{value}") from None
    if not (-90 <= lat <= 90 and -180 <= lng <= 180):
        raise InvalidInput(f"坐标超出范围（纬度 -90~90，经度 -180~180）：{value}")
    return lat, lng


def _phone(value: str) -> str | None:
    if _cleared(value):
        return None
    phone = normalise_phone(value)
    if phone is None:
        raise InvalidInput(f"电话号码不正确：{value}（手机 11 位，座机带区号）")
    return phone


def _fields(change: OrgChange, allowed: dict[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in change.fields:
        if key not in allowed:
            raise InvalidInput(f"未知的字段「{key}」。可用：{'、'.join(allowed.values())}。")
        if key in out:
            raise InvalidInput(f"字段「{allowed[key]}」写了两次。")
        out[key] = value.strip()
    return out


async def _store_target(ctx: Context, change: OrgChange, before: StoreRecord | None) -> StoreRecord:
    problems: list[str] = []
    given = _fields(change, STORE_FIELDS)
    if not CODE.match(change.key):
        problems.append(f"门店编码「{change.key}」只能包含字母、数字、_ - .，最长 64 个字符")
    base = before or StoreRecord(code=change.key, name="")
    name = given.get("name", base.name).strip()
    if not name:
        problems.append("门店名称不能为空（名称=…）")
    elif len(name) > MAX_NAME:
        problems.append(f"门店名称太长（最多 {MAX_NAME} 个字）")
    lat, lng = base.lat, base.lng
    if "position" in given:
        try:
            lat, lng = _position(given["position"])
        except InvalidInput as error:
            problems.append(error.user_message.rstrip("。"))
    if lat is None or lng is None:
        problems.append("新增门店需要坐标（坐标=纬度,经度），派单按它计算距离")
    phone = base.phone
    if "phone" in given:
        try:
            phone = _phone(given["phone"]) or ""
        except InvalidInput as error:
            problems.append(error.user_message)
    texts = {}
    for key in ("address", "opening_hours"):
        value = given.get(key, getattr(base, key))
        value = "" if _cleared(value) else value
        if len(value) > MAX_TEXT:
            problems.append(f"{STORE_FIELDS[key]}太长（最多 {MAX_TEXT} 个字）")
        texts[key] = value
    if problems:
        raise InvalidInput("；".join(problems) + "。", problems=problems)
    active = base.active if change.action in {"add", "update", "rollback"} else change.action == "activate"
    return replace(base, name=name, lat=lat, lng=lng, phone=phone, active=active, **texts)


async def _person_target(ctx: Context, change: OrgChange, before: Person | None,
                         team_before: str | None) -> tuple[Person, str | None, dict[str, str]]:
    """The person after the change, their team, and platform identities to add."""
    problems: list[str] = []
    given = _fields(change, PERSON_FIELDS)
    if not CODE.match(change.key):
        problems.append(f"工号「{change.key}」只能包含字母、数字、中文和 _ - . @ :，最长 64 个字符")
    if before is not None and before.role is Role.CUSTOMER:
        raise InvalidInput(f"{change.key} 是客户，客户资料请用「ticketbot import customers」维护。")
    base = before or Person(id=change.key, name="", role=Role.TECHNICIAN)
    name = given.get("name", base.name).strip()
    if not name:
        problems.append("姓名不能为空（姓名=…）")
    elif len(name) > MAX_NAME:
        problems.append(f"姓名太长（最多 {MAX_NAME} 个字）")
    role = base.role
    if "role" in given:
        found = ROLE_WORDS.get(given["role"]) or ROLE_WORDS.get(given["role"].lower())
        if found is None:
            problems.append(f"未知的角色「{given['role']}」（可用：主管、技师、管理员、仓库、质检、专家、前台）")
        else:
            role = found
    elif before is None:
        problems.append("新增人员需要角色（角色=主管|技师|管理员|仓库|质检|专家|前台）")
    masterdata = ctx.uow.masterdata()
    store_id = base.store_id
    if "store" in given:
        store_id = None if _cleared(given["store"]) else given["store"]
        store = await masterdata.get_store(store_id) if store_id else None
        if store_id and store is None:
            problems.append(f"门店「{store_id}」不存在（发送「门店 列表」查看）")
        elif store is not None and not store.active and store_id != base.store_id:
            problems.append(f"门店「{store_id}」已停用")
    team = team_before
    if "team" in given:
        team = None if _cleared(given["team"]) else given["team"]
    if team and ("team" in given or "store" in given):  # a kept team must still be of the person's store
        record = await masterdata.get_team(team)
        if record is None:
            problems.append(f"班组「{team}」不存在")
        elif record.store_code and store_id and record.store_code != store_id:
            problems.append(f"班组「{team}」属于门店 {record.store_code}，不是 {store_id}")
    supervisor_id = base.supervisor_id
    if "supervisor" in given:
        supervisor_id = None if _cleared(given["supervisor"]) else given["supervisor"]
        if supervisor_id:
            problems += await _supervisor_problems(ctx, change.key, supervisor_id)
    phone = base.phone
    if "phone" in given:
        try:
            phone = _phone(given["phone"])
        except InvalidInput as error:
            problems.append(error.user_message)
    identities: dict[str, str] = {}
    for platform, label in PLATFORMS.items():
        external = given.get(platform)
        if external is None:
            continue
        owner = await ctx.uow.person_by_identity(platform, external) if external else None
        if not external:
            problems.append(f"{label}后请写账号")
        elif owner is not None and owner.id != change.key:
            problems.append(f"{label}账号 {external} 已属于 {owner.id}")
        else:
            identities[platform] = external
    if problems:
        raise InvalidInput("；".join(problems) + "。", problems=problems)
    active = base.active if change.action in {"add", "update", "rollback"} else change.action == "activate"
    after = replace(base, name=name, role=role, store_id=store_id, supervisor_id=supervisor_id, phone=phone,
                    active=active)
    return after, team, identities


async def _supervisor_problems(ctx: Context, person_id: str, supervisor_id: str) -> list[str]:
    if supervisor_id == person_id:
        return ["上级不能是自己"]
    boss = await ctx.uow.get_person(supervisor_id)
    if boss is None or boss.role not in BOSS_ROLES or not boss.active:
        return [f"上级「{supervisor_id}」不存在、已停用或不是主管/管理员"]
    seen = {person_id}
    current: Person | None = boss
    while current is not None and current.supervisor_id:  # the chain must not come back to this person
        if current.supervisor_id in seen:
            return [f"上级「{supervisor_id}」的上级链回到了 {person_id}，会形成循环"]
        seen.add(current.id)
        current = await ctx.uow.get_person(current.supervisor_id)
    return []


# --- consequences and risk -------------------------------------------------------------------

async def staff(ctx: Context) -> list[Person]:
    """Every active person but the customers (role by role: the customers may be many thousands)."""
    return [p for role in Role if role is not Role.CUSTOMER for p in await ctx.uow.list_people(role)]


async def _person_consequences(ctx: Context, before: Person | None, after: Person) -> tuple[list[str], bool]:
    if before is None:
        return [], False
    lines: list[str] = []
    leaving = before.active and not after.active
    high = leaving or before.role is not after.role
    if before.role is Role.TECHNICIAN and (leaving or after.role is not Role.TECHNICIAN):
        jobs = await ctx.uow.list_tickets(assignee_id=before.id, statuses=set(OPEN_STATES), limit=500)
        moving = [t.number for t in jobs if t.status in ACTIVE_JOB_STATES]
        waiting = [t.number for t in jobs if t.status not in ACTIVE_JOB_STATES]
        if moving:
            listing = "、".join(moving[:5]) + ("等" if len(moving) > 5 else "")
            lines.append(f"手上 {len(moving)} 张未结工单（{listing}）将退回派单，改派给其他技师")
        if waiting:
            listing = "、".join(waiting[:5]) + ("等" if len(waiting) > 5 else "")
            lines.append(f"{len(waiting)} 张等待中的工单（{listing}：等备件、客户或签字）将通知主管转派")
        lines.append("不再接收派单")
    if before.role in BOSS_ROLES and (leaving or after.role not in BOSS_ROLES):
        everyone = await staff(ctx)
        below = [p for p in everyone if p.supervisor_id == before.id and p.id != before.id]
        if below:
            lines.append(f"{len(below)} 位下属（{'、'.join(p.name for p in below[:5])}）的超时升级将改发给门店主管")
        if before.role is Role.SUPERVISOR and before.store_id:
            others = [p for p in everyone if p.role is Role.SUPERVISOR and p.store_id == before.store_id
                      and p.id != before.id]
            if not others:
                lines.append(f"门店 {before.store_id} 将没有主管：该店工单的升级将发给所有主管")
    if before.role is Role.ADMIN and (leaving or after.role is not Role.ADMIN):
        admins = [p for p in await ctx.uow.list_people(Role.ADMIN) if p.id != before.id]
        if not admins:
            raise InvalidInput(f"{before.name} 是唯一的管理员，不能停用或改为其他角色。请先任命另一位管理员。")
    if before.id == ctx.actor.id and (leaving or after.role is not before.role):
        raise NotAllowed("不能停用自己或修改自己的角色，请让另一位管理员操作。")
    return lines, high


async def _store_consequences(ctx: Context, before: StoreRecord | None, after: StoreRecord) -> tuple[list[str], bool]:
    if before is None:
        return [], False
    lines: list[str] = []
    members = [p for p in await staff(ctx) if p.store_id == before.code]
    if before.active and not after.active:
        if members:
            lines.append(f"该店还有 {len(members)} 位在职人员（{'、'.join(p.name for p in members[:5])}），"
                         "他们的门店不会自动变更")
        lines.append("停用后不能再把人员分配到这家门店")
    if (before.lat, before.lng) != (after.lat, after.lng):
        technicians = [p for p in members if p.role is Role.TECHNICIAN]
        lines.append(f"该店 {len(technicians)} 位技师的派单距离将按新坐标计算")
    return lines, before.active and not after.active


# --- running a change ------------------------------------------------------------------------

def pending_kind(admin_id: str) -> str:
    return shared_pending_kind(PENDING_PREFIX, admin_id)


async def pending_change(ctx: Context) -> dict[str, Any] | None:
    """The actor's unconfirmed org change, if it is still fresh."""
    return await shared_pending_change(ctx, PENDING_PREFIX, PENDING_TTL)


@dataclass(slots=True)
class _Plan:
    entity: str
    key: str
    action: str
    before: Snapshot | None
    after: Snapshot
    consequences: list[str]
    high_risk: bool
    identities: dict[str, str]
    rollback_of: int | None = None

    @property
    def title(self) -> str:
        what = ACTION_LABELS[self.action] + (f" v{self.rollback_of}" if self.rollback_of else "")
        return f"{ENTITY_LABELS[self.entity]} {self.key}：{what}"


async def _rollback_change(ctx: Context, change: OrgChange) -> tuple[OrgChange, Snapshot | None]:
    """A rollback as the change that restores the record from before version `change.version`."""
    stored = await ctx.uow.config_version(ORG_KIND, change.version or 0)
    if stored is None or stored.get("entity") != change.entity:
        raise NotFound(f"没有{ENTITY_LABELS[change.entity]}修改记录 v{change.version}。"
                       f"发送「{ENTITY_LABELS[change.entity]} 历史」查看。", version=change.version)
    return replace(change, key=stored["key"]), stored.get("before")


async def _plan(ctx: Context, change: OrgChange) -> _Plan:
    restore: Snapshot | None = None
    rollback_of = None
    if change.action == "rollback":
        rollback_of = change.version
        change, restore = await _rollback_change(ctx, change)
    masterdata = ctx.uow.masterdata()
    if change.entity == "store":
        found = await masterdata.get_store(change.key)
        _check_existence(change, found is not None)
        if rollback_of is not None:
            assert found is not None  # _check_existence
            target = _store_from(restore) if restore else replace(found, active=False)
        else:
            target = await _store_target(ctx, change, found)
        before = store_snapshot(found) if found else None
        lines, high = await _store_consequences(ctx, found, target)
        return _Plan("store", change.key, change.action, before, store_snapshot(target), lines, high, {}, rollback_of)
    person = await ctx.uow.get_person(change.key)
    _check_existence(change, person is not None)
    team = await masterdata.person_team(change.key) if person else None
    identities: dict[str, str] = {}
    if rollback_of is not None:
        assert person is not None
        if person.role is Role.CUSTOMER:
            raise InvalidInput(f"{change.key} 是客户，不能用「人员」回滚。")
        after = _person_from(restore, person) if restore else replace(person, active=False)
        after_team = restore.get("team") if restore else team
        if after.supervisor_id and await _supervisor_problems(ctx, after.id, after.supervisor_id):
            after = replace(after, supervisor_id=None)  # that supervisor is gone: the chain falls back to the store
    else:
        after, after_team, identities = await _person_target(ctx, change, person, team)
    lines, high = await _person_consequences(ctx, person, after)
    before = person_snapshot(person, team) if person else None
    return _Plan("person", change.key, change.action, before, person_snapshot(after, after_team), lines, high,
                 identities, rollback_of)


def _check_existence(change: OrgChange, exists: bool) -> None:
    label = ENTITY_LABELS[change.entity]
    if change.action == "add" and exists:
        raise InvalidInput(f"{label} {change.key} 已存在，修改请用「{label} 修改 {change.key} 字段=值」。")
    if change.action != "add" and not exists:
        raise NotFound(f"没有{label}「{change.key}」。发送「{label} 列表」查看。", key=change.key)


def _preview(plan: _Plan) -> list[str]:
    lines = [plan.title]
    diff = diff_lines(plan.entity, plan.before, plan.after)
    lines += ["变化：", *("· " + line for line in diff)] if diff else ["（记录内容没有变化）"]
    if plan.consequences:
        lines += ["影响：", *("· " + line for line in plan.consequences)]
    return lines


@handles(OrgChange)
async def run_org_change(ctx: Context, cmd: OrgChange) -> OrgOutcome:
    ctx.require_role(Role.ADMIN)
    if cmd.entity not in ENTITY_LABELS or cmd.action not in ACTION_LABELS:
        raise InvalidInput("看不懂这条命令。")
    plan = await _plan(ctx, cmd)
    if plan.before is not None and plan.before == plan.after and not plan.identities:
        text = f"{plan.title}\n没有变化，无需修改。"
        await ctx.tell(ctx.actor.id, text)
        return OrgOutcome("unchanged", text=text)
    if cmd.dry_run:
        text = "\n".join([*_preview(plan), "（试运行：没有做任何修改。去掉「试运行」再发送即可执行。）"])
        await ctx.tell(ctx.actor.id, text)
        return OrgOutcome("dry_run", text=text)
    if plan.high_risk:
        return await _propose(ctx, cmd, plan)
    return await _apply(ctx, plan, confirmed=False)


async def _propose(ctx: Context, cmd: OrgChange, plan: _Plan) -> OrgOutcome:
    replaced = await pending_change(ctx)
    await ctx.uow.save_config(pending_kind(ctx.actor.id),
                              {"state": "pending", "admin_id": ctx.actor.id, "description": plan.title,
                               "change": cmd.to_dict()},
                              actor_id=ctx.actor.id, note=plan.title, at=ctx.now)
    await ctx.audit("org_change_pending", {"entity": plan.entity, "key": plan.key, "action": plan.action,
                                           "before": plan.before, "after": plan.after})
    lines = [f"⚠ 高风险修改，需要确认：{plan.title}"]
    if replaced is not None:
        lines.append(f"（之前待确认的「{replaced.get('description', '')}」已被这次替换）")
    lines += _preview(plan)[1:]
    lines.append("回复「确认」执行，回复「取消」放弃（15 分钟内有效）。")
    text = "\n".join(lines)
    await ctx.tell(ctx.actor.id, text)
    return OrgOutcome("pending", text=text)


async def _apply(ctx: Context, plan: _Plan, *, confirmed: bool) -> OrgOutcome:
    if plan.entity == "store":
        store = _store_from(plan.after)
        await ctx.uow.masterdata().upsert_store(store)
        if plan.before is not None and (plan.before["lat"], plan.before["lng"]) != (store.lat, store.lng):
            # Technicians' distances start from their store: every process's candidate index reloads them.
            members = [p.id for p in await ctx.uow.list_people(Role.TECHNICIAN) if p.store_id == store.code]
            if members:
                await ctx.audit("technician_store_moved", {"person_ids": members, "store": store.code})
    else:
        await _write_person(ctx, plan)
    note = plan.title + ("（已确认）" if confirmed else "")
    latest = await ctx.uow.latest_config(ORG_KIND)
    version = await ctx.uow.save_config(
        ORG_KIND, {"entity": plan.entity, "key": plan.key, "action": plan.action, "before": plan.before,
                   "after": plan.after, "rollback_of": plan.rollback_of},
        actor_id=ctx.actor.id, note=note, at=ctx.now, based_on=latest[0] if latest else 0)
    await ctx.audit("org_changed", {"version": version, "entity": plan.entity, "key": plan.key,
                                    "action": plan.action, "before": plan.before, "after": plan.after,
                                    "confirmed": confirmed, "rollback_of": plan.rollback_of})
    lines = [f"已{'确认并' if confirmed else ''}执行：{plan.title}（记录 v{version}）", *_preview(plan)[1:],
             f"撤销这次修改：{ENTITY_LABELS[plan.entity]} 回滚 {version}"]
    text = "\n".join(lines)
    await ctx.tell(ctx.actor.id, text)
    return OrgOutcome("applied", version, text)


async def _write_person(ctx: Context, plan: _Plan) -> None:
    masterdata = ctx.uow.masterdata()
    before = _person_from(plan.before, None) if plan.before is not None else None
    if before is not None:
        stored = await ctx.uow.get_person(plan.key)
        before = stored or before
    after = _person_from(plan.after, before)
    if before is None:
        await ctx.uow.add_person(after, {"local": after.id, **plan.identities})
        await person_changed(ctx, None, after)
    else:
        # Hooks first: the tickets they lock come before the person row (core/timers.py's lock order).
        await person_changed(ctx, before, after)
        await ctx.uow.save_person(after)
        for platform, external in plan.identities.items():
            await ctx.uow.link_identity(after.id, platform, external)
    if plan.before is None or plan.before.get("team") != plan.after.get("team"):
        await masterdata.set_person_team(after.id, plan.after.get("team"))


@handles(ConfirmOrgChange)
async def confirm_org_change(ctx: Context, _cmd: ConfirmOrgChange) -> OrgOutcome:
    ctx.require_role(Role.ADMIN)
    pending = await pending_change(ctx)
    if pending is None:
        raise NotFound("没有待确认的门店/人员修改（或已超过 15 分钟）。")
    change = OrgChange.from_dict(pending["change"])
    await _close_pending(ctx, "confirmed")
    try:
        plan = await _plan(ctx, change)  # on the records as they are now
    except (InvalidInput, NotFound, NotAllowed) as error:
        await ctx.audit("org_change_failed", {"description": pending.get("description", ""),
                                              "reason": error.user_message})
        text = f"待确认的修改已无法执行：{error.user_message}\n没有做任何修改。"
        await ctx.tell(ctx.actor.id, text)
        return OrgOutcome("unchanged", text=text)
    if plan.before == plan.after and not plan.identities:  # someone did the same meanwhile
        text = f"{plan.title}\n记录已经是这样了，没有做任何修改。"
        await ctx.tell(ctx.actor.id, text)
        return OrgOutcome("unchanged", text=text)
    return await _apply(ctx, plan, confirmed=True)


@handles(CancelOrgChange)
async def cancel_org_change(ctx: Context, _cmd: CancelOrgChange) -> None:
    ctx.require_role(Role.ADMIN)
    pending = await pending_change(ctx)
    if pending is None:
        raise NotFound("没有待确认的门店/人员修改（或已超过 15 分钟）。")
    await _close_pending(ctx, "cancelled")
    await ctx.audit("org_change_cancelled", {"description": pending.get("description", "")})
    await ctx.tell(ctx.actor.id, f"已取消待确认的修改：{pending.get('description', '')}。没有做任何修改。")


async def _close_pending(ctx: Context, state: str) -> None:
    await ctx.uow.save_config(pending_kind(ctx.actor.id), {"state": state, "admin_id": ctx.actor.id},
                              actor_id=ctx.actor.id, note=state, at=ctx.now)


# --- reading ---------------------------------------------------------------------------------

@handles(OrgHistory)
async def org_history(ctx: Context, cmd: OrgHistory) -> list[dict[str, Any]]:
    ctx.require_role(Role.ADMIN)
    label = ENTITY_LABELS[cmd.entity]
    prefix = f"{label} {cmd.key}：" if cmd.key else f"{label} "
    rows = [r for r in await ctx.uow.config_history(ORG_KIND, limit=500) if r["note"].startswith(prefix)]
    if not rows:
        await ctx.tell(ctx.actor.id, f"{label}{' ' + cmd.key if cmd.key else ''}还没有修改记录。")
        return []
    lines = [f"v{r['version']} {datetime.fromisoformat(r['created_at']).astimezone(ctx.config.timezone):%m-%d %H:%M}"
             f" {r['actor_id']}：{r['note']}" for r in rows[:HISTORY_SHOWN]]
    more = f"\n（共 {len(rows)} 条，仅显示最近 {HISTORY_SHOWN} 条）" if len(rows) > HISTORY_SHOWN else ""
    await ctx.tell(ctx.actor.id, f"{label}修改记录（新的在前）：\n" + "\n".join(lines) + more
                   + f"\n撤销某次修改：{label} 回滚 版本号")
    return rows


@handles(ListStores)
async def list_stores(ctx: Context, _cmd: ListStores) -> list[StoreRecord]:
    ctx.require_role(Role.ADMIN)
    stores = sorted(await ctx.uow.masterdata().list_stores(), key=lambda s: (not s.active, s.code))
    if not stores:
        await ctx.tell(ctx.actor.id, "还没有门店。新增：门店 新增 S01 名称=… 地址=… 坐标=纬度,经度 营业时间=…")
        return []
    people = await staff(ctx)
    lines = []
    for store in stores[:LISTED]:
        bosses = [p.name for p in people if p.store_id == store.code and p.role is Role.SUPERVISOR]
        count = sum(1 for p in people if p.store_id == store.code)
        lines.append(f"{store.code} {store.name}｜{'启用' if store.active else '停用'}｜{count} 人"
                     f"｜主管 {'、'.join(bosses) or '—'}")
    more = f"\n（共 {len(stores)} 家，仅显示前 {LISTED} 家）" if len(stores) > LISTED else ""
    await ctx.tell(ctx.actor.id, f"门店（{len(stores)} 家）：\n" + "\n".join(lines) + more)
    return stores


@handles(ShowStore)
async def show_store(ctx: Context, cmd: ShowStore) -> StoreRecord:
    ctx.require_role(Role.ADMIN)
    store = await ctx.uow.masterdata().get_store(cmd.code)
    if store is None:
        raise NotFound(f"没有门店「{cmd.code}」。发送「门店 列表」查看。", code=cmd.code)
    people = [p for p in await staff(ctx) if p.store_id == store.code]
    counts: dict[str, int] = {}
    for p in people:
        counts[ROLE_LABELS[p.role]] = counts.get(ROLE_LABELS[p.role], 0) + 1
    position = f"{store.lat:.5f},{store.lng:.5f}" if store.lat is not None and store.lng is not None else "—"
    lines = [f"门店 {store.code} {store.name}（{'启用' if store.active else '停用'}）",
             f"地址：{store.address or '—'}", f"坐标：{position}", f"营业时间：{store.opening_hours or '—'}",
             f"电话：{store.phone or '—'}",
             f"主管：{'、'.join(f'{p.name}（{p.id}）' for p in people if p.role is Role.SUPERVISOR) or '—'}",
             f"人员：{'，'.join(f'{k} {v}' for k, v in counts.items()) or '—'}"]
    await ctx.tell(ctx.actor.id, "\n".join(lines))
    return store


@handles(ListPeople)
async def list_people(ctx: Context, cmd: ListPeople) -> list[Person]:
    ctx.require_role(Role.ADMIN)
    people = await ctx.uow.list_people(cmd.role) if cmd.role else await staff(ctx)
    people.sort(key=lambda p: (list(Role).index(p.role), p.store_id or "", p.id))
    what = ROLE_LABELS[cmd.role] if cmd.role else "人员"
    if not people:
        await ctx.tell(ctx.actor.id, f"没有在职的{what}。新增：人员 新增 工号 姓名=… 角色=… 门店=…")
        return []
    lines = [f"{p.id} {p.name}｜{ROLE_LABELS[p.role]}｜门店 {p.store_id or '—'}｜上级 {p.supervisor_id or '—'}"
             for p in people[:LISTED]]
    more = f"\n（共 {len(people)} 位，仅显示前 {LISTED} 位）" if len(people) > LISTED else ""
    await ctx.tell(ctx.actor.id, f"在职{what}（{len(people)} 位，停用的不列出，可用「人员 查看 工号」）：\n"
                   + "\n".join(lines) + more)
    return people


@handles(ShowPerson)
async def show_person(ctx: Context, cmd: ShowPerson) -> Person:
    ctx.require_role(Role.ADMIN)
    person = await ctx.uow.get_person(cmd.person_id)
    if person is None:
        raise NotFound(f"没有工号为「{cmd.person_id}」的人员。发送「人员 列表」查看。", person_id=cmd.person_id)
    team = await ctx.uow.masterdata().person_team(person.id)
    boss = await ctx.uow.get_person(person.supervisor_id) if person.supervisor_id else None
    accounts = [f"{label} {external}" for platform, label in PLATFORMS.items()
                if (external := await ctx.uow.external_id(person.id, platform))]
    lines = [f"{person.name}（{person.id}）｜{ROLE_LABELS[person.role]}｜{'在职' if person.active else '停用'}",
             f"门店：{person.store_id or '—'}；班组：{team or '—'}",
             f"上级：{f'{boss.name}（{boss.id}）' if boss else person.supervisor_id or '—'}",
             f"手机：{mask_phone(person.phone) if person.phone else '—'}",
             f"账号：{'；'.join(accounts) or '—'}"]
    if person.role is Role.TECHNICIAN:
        lines.append(f"技能、资质、在岗：发送「技师 查看 {person.id}」")
    await ctx.tell(ctx.actor.id, "\n".join(lines))
    return person
