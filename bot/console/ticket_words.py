"""A ticket's audit events in words, for the ticket file (/console/tickets/<number>).

The chat's 工单 card says the same things shorter (core/intake/tickets.py EVENT_LABELS); here every kind
the trail can hold gets a label, and the payload's facts a line of their own. An unknown kind (added
after this module) shows as its name with its payload, never not at all.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from core.intake.tickets import EVENT_LABELS
from core.model import TicketStatus

TRACKS = {"response": "响应", "resolution": "解决"}
PURPOSES = {"checkin": "签到照片", "work": "检修照片", "customer": "客户照片", "signoff": "签字照片", "": "照片"}

LABELS: dict[str, str] = {
    **EVENT_LABELS,
    "sla_started": "SLA 开始计时",
    "sla_paused": "SLA 暂停",
    "sla_resumed": "SLA 恢复计时",
    "sla_response_met": "响应时限结果",
    "sla_resolution_met": "解决时限结果",
    "sla_reminder_sent": "SLA 即将超时提醒",
    "sla_breached": "SLA 超时",
    "sla_escalated": "超时升级",
    "sla_escalation_acknowledged": "升级已确认",
    "sla_root_cause_filled": "填写超时根因",
    "offer_reassigned": "转派派单",
    "offer_withdrawn": "撤回派单",
    "priority_changed": "调整优先级/影响",
    "command_refused": "操作被拒绝",
    "card_action_refused": "卡片操作被拒绝",
    "console_forbidden": "后台越权访问被拒绝",
    "comment_added": "添加备注",
    "urgent_pending": "紧急待确认",
    "unsigned_reopened": "重开未签字工单",
    "status_lock_refused": "状态锁定拒绝",
    "dispatch_stalled": "派单停滞",
    "signoff_in_person_not_fixed": "现场签字：仍未修好",
    "contact_data_purged": "客户联系方式已按期删除",
    "tracking_link_revoked": "进度链接已作废",
    "external_ref_linked": "关联外部系统单号",
    "asset_linked": "关联设备",
    "masterdata_facts_updated": "主数据更新",
    "masterdata_linkage_fired": "主数据联动",
    "timer_fired": "定时任务触发",
    "report_limited": "报修频率受限",
    "card_closed_by_text": "文字回复关闭卡片",
}


def _status(value: Any) -> str:
    try:
        return TicketStatus(str(value)).label
    except ValueError:
        return str(value)


def _when(value: Any, fmt_time: Callable[[datetime | None], str]) -> str:
    if isinstance(value, str):
        try:
            return fmt_time(datetime.fromisoformat(value))
        except ValueError:
            return value
    return str(value)


def describe(kind: str, payload: dict[str, Any], names: dict[str, str],
             fmt_time: Callable[[datetime | None], str]) -> tuple[str, str]:
    """(headline, detail) of one event. `names`: person id → name."""
    def who(person_id: Any) -> str:
        return names.get(str(person_id), str(person_id)) if person_id else "—"

    label = LABELS.get(kind, kind)
    detail = ""
    if kind == "ticket_created":
        detail = (f"类别 {payload.get('category') or '待分诊'}，优先级 {payload.get('priority', '')}，"
                  f"影响 {payload.get('impact', '')}：{payload.get('description', '')}")
    elif kind == "status_changed":
        label = f"{_status(payload.get('from'))} → {_status(payload.get('to'))}"
        extras = []
        if payload.get("assignee"):
            extras.append(f"指派给 {who(payload['assignee'])}")
        if payload.get("previous_assignee"):
            extras.append(f"原处理人 {who(payload['previous_assignee'])}")
        for key, word in (("reason", "原因"), ("parts", "备件"), ("plan", "方案"), ("note", "说明")):
            if payload.get(key):
                extras.append(f"{word}：{payload[key]}")
        if payload.get("lat") is not None:
            extras.append(f"位置 {payload['lat']:.5f}, {payload['lng']:.5f}")
        if payload.get("rating") is not None:
            extras.append(f"评分 {payload['rating']}")
        detail = "；".join(extras)
    elif kind in ("offer_sent", "offer_reassigned"):
        candidate = payload.get("candidate") or {}
        score = candidate.get("score")
        detail = f"派给 {who(payload.get('person_id'))}（第 {payload.get('round', '?')} 轮" + \
            (f"，综合得分 {score:.3f}" if isinstance(score, (int, float)) else "") + "）"
    elif kind in ("offer_accepted", "offer_declined", "offer_expired", "offer_withdrawn"):
        detail = f"{who(payload.get('person_id'))}" + (f"：{payload['reason']}" if payload.get("reason") else "") + \
            (f"（{payload['note']}）" if payload.get("note") else "")
    elif kind == "photo_added":
        detail = f"{PURPOSES.get(str(payload.get('purpose', '')), '照片')}，{payload.get('width', '?')}×" \
                 f"{payload.get('height', '?')}，{int(payload.get('size', 0)) // 1024} KB" + \
                 ("（重复的照片，未计数）" if payload.get("repeated") else "")
    elif kind in ("location_shared", "site_located"):
        if payload.get("lat") is not None:
            detail = f"{payload['lat']:.5f}, {payload['lng']:.5f}"
    elif kind == "sla_started":
        detail = f"{payload.get('cell', '')}，响应截止 {_when(payload.get('response_due'), fmt_time)}，" \
                 f"解决截止 {_when(payload.get('resolution_due'), fmt_time)}"
    elif kind == "sla_paused":
        detail = f"因「{_status(payload.get('state'))}」暂停"
    elif kind == "sla_resumed":
        detail = f"暂停 {payload.get('paused_minutes', 0):.0f} 分钟，" \
                 f"解决截止 {_when(payload.get('resolution_due'), fmt_time)}"
    elif kind in ("sla_response_met", "sla_resolution_met"):
        label = f"{LABELS[kind].removesuffix('结果')}{'达成' if payload.get('met') else '未达成'}"
        detail = f"截止 {_when(payload.get('due'), fmt_time)}"
    elif kind in ("sla_breached", "sla_reminder_sent"):
        track = TRACKS.get(str(payload.get("track")), str(payload.get("track", "")))
        label = f"{track}{LABELS[kind]}"
        extras = [f"截止 {_when(payload.get('due'), fmt_time)}"] if payload.get("due") else []
        if payload.get("escalated_to"):
            extras.append("已通知 " + "、".join(who(p) for p in payload["escalated_to"]))
        if payload.get("root_cause_owner"):
            extras.append(f"根因分析由 {who(payload['root_cause_owner'])} 填写")
        detail = "；".join(extras)
    elif kind == "sla_escalated":
        detail = f"{TRACKS.get(str(payload.get('track')), '')}第 {payload.get('level', '?')} 级升级，通知 " + \
                 "、".join(who(p) for p in payload.get("to", []))
    elif kind == "sla_escalation_acknowledged":
        detail = f"{TRACKS.get(str(payload.get('track')), '')}（{payload.get('how', '')}）"
    elif kind == "sla_root_cause_filled":
        detail = f"{TRACKS.get(str(payload.get('track')), '')}超时根因：{payload.get('reason', '')}"
    elif kind == "signed_off":
        confirmations = payload.get("confirmations") or {}
        detail = f"评分 {payload.get('rating', '—')}；" \
                 f"已告知故障原因 {'✓' if confirmations.get('cause_told') else '✗'}；" \
                 f"配件更换已确认 {'✓' if confirmations.get('parts_confirmed') else '✗'}" + \
                 ("；现场签字（技师设备）" if payload.get("in_person") else "")
    elif kind == "sop_shown":
        detail = f"{payload.get('sop', '')} → {who(payload.get('to'))}"
    elif kind == "priority_changed":
        detail = "；".join(f"{k}：{v}" for k, v in payload.items() if isinstance(v, (str, int, float)))
    elif kind in ("command_refused", "card_action_refused"):
        detail = f"{payload.get('command') or payload.get('action') or ''}：{payload.get('reply', '')}"
    elif kind == "console_forbidden":
        detail = str(payload.get("what", ""))
    elif kind == "card_action":
        detail = f"{payload.get('kind', '')} · {payload.get('action', '')}"
    elif kind in ("parts_progress", "parts_escalated", "report_follow_up", "comment_added"):
        detail = str(payload.get("text") or payload.get("note") or "")
    else:
        detail = "；".join(f"{k}：{v}" for k, v in payload.items()
                          if isinstance(v, (str, int, float)) and k not in ("card_id", "caused_by"))[:300]
    if payload.get("caused_by") and kind.startswith("sla_"):
        detail = (detail + "；" if detail else "") + f"由 {who(payload['caused_by'])} 的操作引起"
    return label, detail
