"""The versioned configuration behind the admin pages: one `ConfigSection` per page, its history, the
payload of any version (0 = the shipped defaults) and a diff between two versions in Chinese lines.

Each section names the config kind the chat's commands write (rules, sla, workflow, sop, dispatch,
calendar), so the page and the chat show the same history.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from bot.rules.rulebook import RULES_KIND, rules_from_payload, shipped_rules
from core.dispatch.admin import WEIGHT_LABELS
from core.dispatch.offers import POLICY_KIND
from core.dispatch.policy import DispatchPolicy
from core.lifecycle.common import WORKFLOW_KIND
from core.lifecycle.sop import SopLibrary, default_library
from core.lifecycle.sop_handlers import SOP_KIND
from core.lifecycle.template import diff as workflow_diff
from core.repository import UnitOfWork
from core.sla.matrix import SlaMatrix
from core.sla.stored_config import CALENDAR_KIND, SLA_KIND, CalendarConfig
from core.sla.versioned_saves import changed_cells
from core.workflow import Workflow, repair_service_workflow
from nlp.rule_diff import diff_rules

HISTORY_LIMIT = 30
Differ = Callable[[dict[str, Any], dict[str, Any]], list[str]]


@dataclass(frozen=True, slots=True)
class ConfigSection:
    slug: str  # the page's path under /console/admin/
    title: str
    kind: str  # config_versions.kind
    default: Callable[[], dict[str, Any]]  # version 0
    differ: Differ

    def diff(self, old: dict[str, Any], new: dict[str, Any]) -> list[str]:
        return self.differ(old, new) or ["（内容相同）"]


def _rules_diff(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    return diff_rules(rules_from_payload(0, old), rules_from_payload(0, new)).lines(limit=50)


def _sla_diff(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    return [c["text"] for c in changed_cells(SlaMatrix.from_dict(old), SlaMatrix.from_dict(new))]


def _workflow_diff(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    before, after = Workflow.from_dict(old), Workflow.from_dict(new)
    lines = [f"模板名称：{before.name} → {after.name}"] if before.name != after.name else []
    return lines + workflow_diff(before, after)


def _sop_diff(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    before = {s.key: s for s in SopLibrary.from_dict(old).sops}
    after = {s.key: s for s in SopLibrary.from_dict(new).sops}
    lines = [f"新增 SOP「{k}」（{len(after[k].steps)} 步）" for k in sorted(after.keys() - before.keys())]
    lines += [f"删除 SOP「{k}」" for k in sorted(before.keys() - after.keys())]
    for key in sorted(before.keys() & after.keys()):
        a, b = before[key], after[key]
        if a == b:
            continue
        steps = [f"第 {i} 步：{x.text if x else '（无）'} → {y.text if y else '（删除）'}"
                 for i, (x, y) in enumerate(_pairs(a.steps, b.steps), 1) if x != y]
        head = f"修改 SOP「{key}」" + (f"：标题 {a.title} → {b.title}" if a.title != b.title else "")
        lines.append(head)
        lines += ["  · " + s for s in steps]
        if a.keywords != b.keywords:
            lines.append(f"  · 关键词：{'、'.join(a.keywords) or '无'} → {'、'.join(b.keywords) or '无'}")
        if a.notes != b.notes:
            lines.append("  · 备注已修改")
    return lines


def _pairs(a: tuple[Any, ...], b: tuple[Any, ...]) -> list[tuple[Any, Any]]:
    n = max(len(a), len(b))
    return [(a[i] if i < len(a) else None, b[i] if i < len(b) else None) for i in range(n)]


def _dispatch_diff(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    before, after = DispatchPolicy.from_dict(old).to_dict(), DispatchPolicy.from_dict(new).to_dict()
    lines = []
    for key, label in WEIGHT_LABELS.items():
        a, b = before["weights"][key], after["weights"][key]
        if a != b:
            lines.append(f"权重 {label}：{a:.0%} → {b:.0%}")
    for key in sorted(set(before) | set(after)):
        if key != "weights" and before.get(key) != after.get(key):
            lines.append(f"{key}：{_short(before.get(key))} → {_short(after.get(key))}")
    return lines


def _calendar_diff(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    before, after = CalendarConfig.from_dict(old), CalendarConfig.from_dict(new)
    a = {o.day: o for o in before.overrides}
    b = {o.day: o for o in after.overrides}

    def text(o: Any) -> str:
        return f"{o.day.isoformat()} {'上班' if o.working else '休息'} {o.note}".rstrip()

    lines = [f"新增覆盖：{text(b[d])}" for d in sorted(b.keys() - a.keys())]
    lines += [f"删除覆盖：{text(a[d])}" for d in sorted(a.keys() - b.keys())]
    lines += [f"修改覆盖：{text(a[d])} → {text(b[d])}" for d in sorted(a.keys() & b.keys()) if a[d] != b[d]]
    lines += [f"确认 {y} 年安排" for y in sorted(after.confirmed_years - before.confirmed_years)]
    lines += [f"取消确认 {y} 年安排" for y in sorted(before.confirmed_years - after.confirmed_years)]
    return lines


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, sort_keys=True) if not isinstance(value, str) else value
    return text if len(text) <= 80 else text[:79] + "…"


SECTIONS: dict[str, ConfigSection] = {s.slug: s for s in (
    ConfigSection("rules", "故障分类规则", RULES_KIND, lambda: shipped_rules().to_dict(), _rules_diff),
    ConfigSection("sla", "SLA 矩阵", SLA_KIND, lambda: SlaMatrix.default().to_dict(), _sla_diff),
    ConfigSection("template", "流程模板", WORKFLOW_KIND, lambda: repair_service_workflow().to_dict(), _workflow_diff),
    ConfigSection("sop", "SOP 知识库", SOP_KIND, lambda: default_library().to_dict(), _sop_diff),
    ConfigSection("dispatch", "派单权重", POLICY_KIND, lambda: DispatchPolicy().to_dict(), _dispatch_diff),
    ConfigSection("holidays", "节假日与调休", CALENDAR_KIND, lambda: CalendarConfig().to_dict(), _calendar_diff),
)}


@dataclass(frozen=True, slots=True)
class VersionRow:
    version: int
    at: datetime
    actor_id: str
    actor_name: str
    note: str


async def current_version(uow: UnitOfWork, section: ConfigSection) -> tuple[int, dict[str, Any]]:
    latest = await uow.latest_config(section.kind)
    return latest if latest is not None else (0, section.default())


async def payload_at(uow: UnitOfWork, section: ConfigSection, version: int) -> dict[str, Any] | None:
    if version == 0:
        return section.default()
    return await uow.config_version(section.kind, version)


async def history(uow: UnitOfWork, section: ConfigSection, zone: ZoneInfo,
                  limit: int = HISTORY_LIMIT) -> list[VersionRow]:
    rows = await uow.config_history(section.kind, limit=limit)
    names: dict[str, str] = {}
    for actor_id in {r["actor_id"] for r in rows}:
        person = await uow.get_person(actor_id)
        names[actor_id] = person.name if person else actor_id
    return [VersionRow(int(r["version"]), datetime.fromisoformat(r["created_at"]).astimezone(zone), r["actor_id"],
                       names[r["actor_id"]], r["note"]) for r in rows]
