"""Directory sync: the people and departments of a chat platform's address book, applied to ours.

Core knows no platform: an adapter (adapters/<platform>/directory.py) fetches every page first and
hands over a `DirectorySnapshot` of plain records; `SyncDirectory` then applies it in ONE unit of
work, so a fetch that fails midway changes nothing, and an apply that fails rolls back whole.

What the apply does, per platform:
  * a person is found by their platform identity (identities table). Unknown identities with a
    mobile that belongs to exactly one staff member (not a customer) not linked to this platform yet
    are linked to that person (someone imported before the sync); otherwise a new person is created
    with id `<wx|fs|dd>-<platform id>` and the role of the `RoleMapping` (department names and job
    titles → role). The default is the customer role: a synced colleague must never start receiving
    jobs by accident; only a mapping (or an admin) makes someone a technician;
  * an existing person keeps their role; name, mobile (when the platform reveals it), supervisor
    (when the platform's leader is one of our supervisors or admins) and team follow the platform;
  * departments become teams (`<wx|fs|dd>-<department id>`); a team of ours a department no longer
    backs is deactivated; a person's team follows their main department unless an admin put them in
    a team that is not the platform's;
  * a person linked to the platform who is gone from it, or whom it marks inactive (disabled, left),
    is DEACTIVATED, never deleted, through `core.masterdata.events.person_changed`: the same path as
    `人员 停用`, so their open jobs go back to dispatch exactly the same way (core/dispatch/release.py).
    The sync never reactivates anyone: an admin's 停用 may have had its reasons;
  * a snapshot that would deactivate more than `max_deactivate_share` of the platform's linked people
    is refused unless forced: a narrowed app visibility scope looks exactly like a mass departure.

The daily run is a durable timer (kind `directory.sync`, no ticket): the row fires once however many
processes run, re-arms itself for the next day, and hands the fetch to the runner the composition
root installed (`install_directory_runner`), after the commit, off the timer loop.
"""

from __future__ import annotations

import hashlib
import re
import weakref
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, time, timedelta
from typing import Any

from core.errors import InvalidInput
from core.masterdata.events import person_changed
from core.masterdata.identifiers import normalise_phone
from core.masterdata.model import TeamRecord
from core.model import ROLE_LABELS, Person, Role, Ticket, TicketStatus
from core.service import Context, TicketService, handles
from core.timers import timer_handler

PLATFORMS = ("wecom", "feishu", "dingtalk")
PLATFORM_LABELS = {"wecom": "企业微信", "feishu": "飞书", "dingtalk": "钉钉"}
ID_PREFIX = {"wecom": "wx", "feishu": "fs", "dingtalk": "dd"}
PERSON_ID = re.compile(r"^[\w.@:\-]{1,64}$")
MAX_NAME = 64
MAX_LISTED = 200  # ids listed per kind in the audit event (the counts are always complete)
DEFAULT_MAX_DEACTIVATE_SHARE = 0.5
SYNC_TIMER = "directory.sync"
SYNC_AT = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")
OPEN_STATES = {s for s in TicketStatus if s.is_open}


class DirectoryFetchFailed(Exception):
    """A page of the platform's directory could not be fetched: nothing is applied."""

    def __init__(self, platform: str, reason: str) -> None:
        super().__init__(f"{platform}: {reason}")
        self.platform = platform
        self.reason = reason


# --- what adapters hand over ------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class DirectoryDepartment:
    platform: str
    external_id: str
    name: str
    parent_id: str | None = None
    leader_ids: tuple[str, ...] = ()  # platform user ids of its leaders


@dataclass(frozen=True, slots=True)
class DirectoryPerson:
    platform: str
    external_id: str  # the id the platform's messages carry (WeCom userid, Feishu open_id, DingTalk userid)
    name: str  # "" when the platform withholds it
    mobile: str | None = None  # None when the platform withholds it (WeCom apps created after 2022-06-20)
    departments: tuple[str, ...] = ()  # department external ids, the main one first
    title: str = ""
    active: bool = True
    leader_id: str | None = None  # platform user id of their direct leader, when the platform says


@dataclass(frozen=True, slots=True)
class DirectorySnapshot:
    """Everything the app can see of one platform's directory, fetched completely."""

    platform: str
    departments: tuple[DirectoryDepartment, ...]
    people: tuple[DirectoryPerson, ...]
    root_ids: frozenset[str] = frozenset()  # the company itself: no team


# --- roles for new people ---------------------------------------------------------------------

_ROLE_WORDS: dict[str, Role] = {r.value: r for r in Role} | {label: r for r, label in ROLE_LABELS.items()}


def parse_role(text: str) -> Role:
    role = _ROLE_WORDS.get(text.strip().lower()) or _ROLE_WORDS.get(text.strip())
    if role is None:
        known = "、".join(f"{r.value}（{ROLE_LABELS[r]}）" for r in Role)
        raise InvalidInput(f"未知的角色「{text.strip()}」，可用：{known}", role=text)
    return role


@dataclass(frozen=True, slots=True)
class RoleMapping:
    """Keyword → role for people the sync creates; the first rule whose keyword appears in the job
    title or a department name wins, else `default`."""

    rules: tuple[tuple[str, Role], ...] = ()
    default: Role = Role.CUSTOMER

    @classmethod
    def parse(cls, text: str, default: str = "customer") -> RoleMapping:
        """`维修=technician,客服=front_desk；主管=主管` (`,` `;` `，` `；` or new lines between rules)."""
        rules: list[tuple[str, Role]] = []
        for part in re.split(r"[,;，；\n]+", text or ""):
            if not part.strip():
                continue
            keyword, sep, role = part.partition("=")
            if not sep or not keyword.strip() or not role.strip():
                raise InvalidInput(f"角色映射「{part.strip()}」格式不对，应为 关键词=角色，例如 维修=technician",
                                   rule=part)
            rules.append((keyword.strip(), parse_role(role)))
        return cls(tuple(rules), parse_role(default or "customer"))

    def role_for(self, title: str, department_names: Iterable[str]) -> Role:
        texts = [title, *department_names]
        for keyword, role in self.rules:
            if any(keyword in t for t in texts if t):
                return role
        return self.default


# --- the command and its report ---------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class SyncDirectory:
    snapshot: DirectorySnapshot
    roles: RoleMapping = field(default_factory=RoleMapping)
    max_deactivate_share: float = DEFAULT_MAX_DEACTIVATE_SHARE
    force: bool = False  # apply even when more than max_deactivate_share would be deactivated


@dataclass(slots=True)
class SyncReport:
    platform: str
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    deactivated: list[str] = field(default_factory=list)
    unchanged: int = 0
    errors: list[dict[str, str]] = field(default_factory=list)
    released: list[str] = field(default_factory=list)  # tickets sent back to dispatch
    teams: dict[str, int] = field(default_factory=lambda: {"created": 0, "updated": 0, "deactivated": 0,
                                                           "unchanged": 0})

    @property
    def changed(self) -> bool:
        return bool(self.created or self.updated or self.deactivated or any(
            self.teams[k] for k in ("created", "updated", "deactivated")))

    def to_dict(self) -> dict[str, Any]:
        return {"platform": self.platform, "created": len(self.created), "updated": len(self.updated),
                "deactivated": len(self.deactivated), "unchanged": self.unchanged, "errors": list(self.errors),
                "teams": dict(self.teams), "people": {"created": self.created, "updated": self.updated,
                                                      "deactivated": self.deactivated},
                "tickets_released": self.released}


def team_code(platform: str, department_id: str) -> str:
    return f"{ID_PREFIX[platform]}-{department_id}"[:64]


def _new_person_id(platform: str, external_id: str) -> str:
    candidate = f"{ID_PREFIX[platform]}-{external_id}"
    if PERSON_ID.match(candidate):
        return candidate
    # Platform ids outside our id alphabet or too long: a stable digest keeps it unique and readable.
    return f"{ID_PREFIX[platform]}-{hashlib.sha1(external_id.encode()).hexdigest()[:16]}"


def _clean(snapshot: DirectorySnapshot, report: SyncReport) -> tuple[list[DirectoryPerson], set[str]]:
    """The usable records (one per id) and every id the platform listed, usable or not."""
    if snapshot.platform not in PLATFORMS:
        raise InvalidInput(f"未知的平台：{snapshot.platform}", platform=snapshot.platform)
    seen: dict[str, DirectoryPerson] = {}
    listed: set[str] = set()
    for record in snapshot.people:
        external = (record.external_id or "").strip()
        if not external or len(external) > 128:
            report.errors.append({"external_id": external[:64], "message": "平台账号为空或超过 128 个字符，已跳过"})
            continue
        listed.add(external)
        if record.platform != snapshot.platform:
            report.errors.append({"external_id": external, "message": f"记录属于平台 {record.platform}，已跳过"})
            continue
        if external in seen:
            # Listed under several departments: one person, every department of them.
            first = seen[external]
            departments = first.departments + tuple(d for d in record.departments if d not in first.departments)
            seen[external] = replace(first, departments=departments, active=first.active and record.active)
            continue
        seen[external] = replace(record, external_id=external, name=(record.name or "").strip()[:MAX_NAME])
    return list(seen.values()), listed


@handles(SyncDirectory)
async def sync_directory(ctx: Context, cmd: SyncDirectory) -> SyncReport:
    ctx.require_role(Role.ADMIN)
    snapshot = cmd.snapshot
    platform = snapshot.platform
    report = SyncReport(platform)
    records, listed = _clean(snapshot, report)
    store = ctx.uow.masterdata()
    linked = await store.identities_on(platform)  # external id -> person id
    by_person = {person_id: external for external, person_id in linked.items()}
    # The lock order (core/timers.py; intake locks its customer before anything): the people this run
    # may change, before any ticket or the audit head, then read as they are now. A report by one of
    # them waits for the sync, never the other way round.
    for person_id in sorted(by_person):
        await ctx.uow.lock_person(person_id)

    # Who leaves: linked, active, and gone from the platform or marked inactive there.
    inactive = {r.external_id for r in records if not r.active}
    leaving: list[Person] = []
    linked_active = 0
    for external, person_id in sorted(linked.items()):
        person = await ctx.uow.get_person(person_id)
        if person is None or not person.active:
            continue
        linked_active += 1
        if external not in listed or external in inactive:
            leaving.append(person)
    limit = cmd.max_deactivate_share * linked_active
    if not cmd.force and len(leaving) > 2 and len(leaving) > limit:
        raise InvalidInput(
            f"{PLATFORM_LABELS[platform]}通讯录同步将停用 {len(leaving)}/{linked_active} 人，超过 "
            f"{cmd.max_deactivate_share:.0%}，可能是应用的通讯录可见范围被缩小了。没有做任何修改；"
            "确认无误后请用 `ticketbot directory sync --force` 同步。",
            platform=platform, leaving=len(leaving), linked=linked_active)

    # The lock order of core/timers.py: every ticket the releases will move, before the audit head
    # that the first release's audit takes (one leaver's tickets after another's head would invert it).
    for person in leaving:
        for number in sorted(await _open_numbers(ctx, person.id)):
            await ctx.uow.get_ticket(number, lock=True)

    for person in leaving:
        after = replace(person, active=False)
        before_jobs = await _open_numbers(ctx, person.id)
        await person_changed(ctx, person, after)
        await ctx.uow.save_person(after)
        report.deactivated.append(person.id)
        report.released += [n for n in before_jobs if n not in await _open_numbers(ctx, person.id)]

    teams = await _sync_teams(ctx, snapshot, report)
    # The company's own name ("XX汽车维修有限公司") must not make everyone a technician: roots are no match.
    names = {d.external_id: d.name for d in snapshot.departments if d.external_id not in snapshot.root_ids}
    leaving_ids = {p.id for p in leaving}
    for record in records:
        if record.external_id in inactive and linked.get(record.external_id) in leaving_ids:
            continue  # deactivated above
        await _apply_person(ctx, cmd, record, linked, by_person, teams, names, report)
    await _link_leaders(ctx, snapshot, report)

    if report.changed:
        await ctx.audit("directory_synced", {
            "platform": platform, "created": report.created[:MAX_LISTED], "updated": report.updated[:MAX_LISTED],
            "deactivated": report.deactivated[:MAX_LISTED], "unchanged": report.unchanged,
            "counts": {"created": len(report.created), "updated": len(report.updated),
                       "deactivated": len(report.deactivated)},
            "teams": report.teams, "tickets_released": report.released[:MAX_LISTED],
            "errors": len(report.errors)})
    return report


async def _open_numbers(ctx: Context, person_id: str) -> list[str]:
    return [t.number for t in await ctx.uow.list_tickets(assignee_id=person_id, statuses=OPEN_STATES, limit=500)]


async def _sync_teams(ctx: Context, snapshot: DirectorySnapshot, report: SyncReport) -> dict[str, str]:
    """Departments → teams; returns department id → team code (not for the root)."""
    store = ctx.uow.masterdata()
    prefix = ID_PREFIX[snapshot.platform] + "-"
    existing = {t.code: t for t in await store.list_teams() if t.code.startswith(prefix)}
    codes: dict[str, str] = {}
    for department in snapshot.departments:
        if department.external_id in snapshot.root_ids or not department.external_id:
            continue
        code = team_code(snapshot.platform, department.external_id)
        codes[department.external_id] = code
        before = existing.get(code)
        name = (department.name or "").strip()[:MAX_NAME] or (before.name if before else code)
        after = TeamRecord(code=code, name=name, store_code=before.store_code if before else None,
                           leader_id=before.leader_id if before else None, active=True)
        if before == after:
            report.teams["unchanged"] += 1
            continue
        await store.upsert_team(after)
        report.teams["created" if before is None else "updated"] += 1
    for code, team in existing.items():
        if code not in codes.values() and team.active:
            await store.upsert_team(replace(team, active=False))
            report.teams["deactivated"] += 1
    return codes


async def _apply_person(ctx: Context, cmd: SyncDirectory, record: DirectoryPerson, linked: dict[str, str],
                        by_person: dict[str, str], teams: dict[str, str], names: dict[str, str],
                        report: SyncReport) -> None:
    platform = record.platform
    store = ctx.uow.masterdata()
    phone = normalise_phone(record.mobile) if record.mobile else None
    person_id = linked.get(record.external_id)
    person = await ctx.uow.get_person(person_id) if person_id else None
    link = False
    if person is None and phone:
        # Imported before the sync (a phone, no platform id yet): the one staff member with that phone.
        staff = [p for p in await ctx.uow.people_by_phone(phone)
                 if p.role is not Role.CUSTOMER and p.id not in by_person]
        if len(staff) == 1:
            person, link = staff[0], True
    team = next((teams[d] for d in record.departments if d in teams), None)
    if person is None:
        if not record.active:
            report.unchanged += 1  # never known here, inactive there: nothing to do
            return
        new_id = _new_person_id(platform, record.external_id)
        suffix = 2
        while await ctx.uow.get_person(new_id) is not None:
            new_id = f"{_new_person_id(platform, record.external_id)[:60]}-{suffix}"
            suffix += 1
        role = cmd.roles.role_for(record.title, (names.get(d, "") for d in record.departments))
        created = Person(id=new_id, name=record.name or record.external_id, role=role, phone=phone,
                         preferred_channel=platform)
        if record.external_id in linked:  # an identity left behind by a person no longer here: re-pointed
            await ctx.uow.add_person(created)
            await ctx.uow.link_identity(new_id, platform, record.external_id)
        else:
            await ctx.uow.add_person(created, {platform: record.external_id})
        by_person[new_id] = record.external_id
        if team is not None:
            await store.set_person_team(new_id, team)
        await person_changed(ctx, None, created)
        report.created.append(new_id)
        return
    after = replace(person, name=record.name or person.name, phone=phone or person.phone)
    if link and person.preferred_channel == "local":
        after = replace(after, preferred_channel=platform)
    changed = after != person
    if changed:
        await person_changed(ctx, person, after)
        await ctx.uow.save_person(after)
    if link:
        await ctx.uow.link_identity(person.id, platform, record.external_id)
        by_person[person.id] = record.external_id
    current_team = await store.person_team(person.id)
    prefix = ID_PREFIX[platform] + "-"
    # An admin's own team assignment (a team that is not the platform's) is left alone.
    if team != current_team and (current_team is None or current_team.startswith(prefix)):
        await store.set_person_team(person.id, team)
        changed = True
    if changed or link:
        report.updated.append(person.id)
    else:
        report.unchanged += 1


async def _link_leaders(ctx: Context, snapshot: DirectorySnapshot, report: SyncReport) -> None:
    """Team leaders and direct supervisors, once every person of the snapshot exists. Only our
    supervisors and admins become someone's supervisor: escalation goes to supervisor_id."""
    store = ctx.uow.masterdata()
    linked = await store.identities_on(snapshot.platform)
    for department in snapshot.departments:
        code = team_code(snapshot.platform, department.external_id)
        team = await store.get_team(code) if department.external_id not in snapshot.root_ids else None
        leader = next((linked[x] for x in department.leader_ids if x in linked), None)
        if team is not None and leader is not None and team.leader_id != leader:
            await store.upsert_team(replace(team, leader_id=leader))
            report.teams["updated"] += 1
    for record in snapshot.people:
        if not record.leader_id or record.external_id not in linked or record.leader_id not in linked:
            continue
        person = await ctx.uow.get_person(linked[record.external_id])
        boss = await ctx.uow.get_person(linked[record.leader_id])
        if (person is None or boss is None or not person.active or boss.id == person.id
                or boss.role not in (Role.SUPERVISOR, Role.ADMIN) or person.supervisor_id == boss.id):
            continue
        after = replace(person, supervisor_id=boss.id)
        await person_changed(ctx, person, after)
        await ctx.uow.save_person(after)
        if person.id not in report.updated and person.id not in report.created:
            report.updated.append(person.id)
            report.unchanged = max(0, report.unchanged - 1)


# --- the daily run ----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class TellDirectorySync:
    """After an unattended (daily) run: tell the admins when a platform failed or someone was
    deactivated — what nobody would otherwise notice. Quiet days stay quiet."""

    reports: tuple[dict[str, Any], ...]


@handles(TellDirectorySync)
async def tell_directory_sync(ctx: Context, cmd: TellDirectorySync) -> int:
    ctx.require_role(Role.ADMIN)
    lines: list[str] = []
    for report in cmd.reports:
        label = PLATFORM_LABELS.get(str(report.get("platform")), str(report.get("platform")))
        if not report.get("ok"):
            reasons = "；".join(str(e.get("message", "")) for e in report.get("errors", [])[:3])
            lines.append(f"{label}：同步失败，{reasons}")
        if report.get("deactivated"):
            names = []
            for person_id in report.get("people", {}).get("deactivated", [])[:20]:
                person = await ctx.uow.get_person(person_id)
                names.append(f"{person.name}（{person_id}）" if person else person_id)
            released = report.get("tickets_released") or []
            lines.append(f"{label}：新增 {report.get('created', 0)} 人，更新 {report.get('updated', 0)} 人，"
                         f"停用 {report['deactivated']} 人：{'、'.join(names)}"
                         + (f"；其工单已退回派单：{'、'.join(released[:20])}" if released else ""))
    if not lines:
        return 0
    admins = await ctx.uow.list_people(Role.ADMIN)
    for admin in admins:
        await ctx.tell(admin.id, "【通讯录同步】\n" + "\n".join(lines)
                       + "\n（停用的人员不会被自动重新启用；如需恢复请用「人员 启用 工号」）")
    return len(admins)


DirectoryRunner = Callable[[], Awaitable[None]]
_RUNNERS: weakref.WeakKeyDictionary[TicketService, DirectoryRunner] = weakref.WeakKeyDictionary()


def install_directory_runner(service: TicketService, runner: DirectoryRunner | None) -> None:
    """What runs the sync in this process when the daily timer fires (the composition root's job:
    fetch from the platforms, then SyncDirectory). It must return at once (spawn the work)."""
    if runner is None:
        _RUNNERS.pop(service, None)
    else:
        _RUNNERS[service] = runner


def parse_sync_at(text: str | None) -> time | None:
    """`03:00` → 03:00 local time; empty → None (no daily sync)."""
    if not text or not text.strip():
        return None
    match = SYNC_AT.match(text.strip())
    if match is None:
        raise InvalidInput(f"DIRECTORY_SYNC_AT「{text}」格式不对，应为 HH:MM（本地时间），例如 03:00；"
                           "留空表示不自动同步。", value=text)
    return time(int(match.group(1)), int(match.group(2)))


def next_sync_at(ctx: Context, at: time, after: datetime) -> datetime:
    zone = ctx.config.timezone
    local = after.astimezone(zone)
    candidate = datetime.combine(local.date(), at, tzinfo=zone)
    if candidate <= local:
        candidate = datetime.combine(local.date() + timedelta(days=1), at, tzinfo=zone)
    return candidate.astimezone(after.tzinfo)


@dataclass(frozen=True, slots=True)
class ArmDirectorySync:
    """Make the daily timer match the setting: armed at the next `at` (local), or cancelled."""

    at: str | None


@handles(ArmDirectorySync)
async def arm_directory_sync(ctx: Context, cmd: ArmDirectorySync) -> datetime | None:
    ctx.require_role(Role.ADMIN)
    at = parse_sync_at(cmd.at)
    timer = await ctx.uow.get_timer(SYNC_TIMER, None)
    if at is None:
        if timer is not None and timer.state == "pending":
            await ctx.uow.cancel_timers("", {SYNC_TIMER})  # "" is the key of timers without a ticket
        return None
    wanted = at.strftime("%H:%M")
    if timer is not None and timer.state == "pending" and timer.payload.get("at") == wanted:
        return timer.due_at  # armed already (every process arms at start)
    due = next_sync_at(ctx, at, ctx.now)
    await ctx.uow.schedule_timer(kind=SYNC_TIMER, ticket_number=None, due_at=due, payload={"at": wanted})
    return due


@timer_handler(SYNC_TIMER)
async def _sync_due(ctx: Context, _ticket: Ticket | None, payload: dict[str, Any]) -> None:
    try:
        at = parse_sync_at(str(payload.get("at") or ""))
    except InvalidInput:
        at = None
    if at is not None:  # tomorrow's run first: a failed sync today does not stop the next one
        await ctx.uow.schedule_timer(kind=SYNC_TIMER, ticket_number=None, due_at=next_sync_at(ctx, at, ctx.now),
                                     payload={"at": at.strftime("%H:%M")})
    runner = _RUNNERS.get(ctx.service)
    if runner is None:
        await ctx.audit("directory_sync_skipped", {"reason": "no directory runner in the process that fired it"})
        return
    await ctx.uow.after_commit(runner)
