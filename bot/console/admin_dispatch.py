"""The dispatch weights page: qualification / distance / load / rating in percent (they must add up to
100 %, the policy's own rule), and the offer timeout. The preview shows old → new and, for a sample
ticket, how its candidates rank now and with the new weights (nothing changes).

Saving runs the chat's commands (`派单规则 权重 …` → `SetDispatchWeights`, `派单规则 超时 …` →
`SetOfferTimeout`): one version each, audited "config_changed"; rollback is `RollbackDispatchPolicy`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace

from aiohttp import web

from bot.console.admin_versions import SECTIONS, history
from bot.console.admin_web import (
    ADMIN_ROOT,
    FormError,
    Preview,
    Table,
    int_field,
    render,
    render_preview,
    run_as,
    runtime_of,
    saved_redirect,
)
from bot.console.auth import StaffSession
from core.dispatch.admin import WEIGHT_LABELS, RollbackDispatchPolicy, SetDispatchWeights, SetOfferTimeout
from core.dispatch.engine import rank_candidates
from core.dispatch.live import live_index
from core.dispatch.offers import current_policy, place_of, request_for
from core.dispatch.policy import DispatchPolicy, DispatchPolicyError, DispatchWeights, format_seconds
from core.errors import TicketbotError
from core.service import Context

SECTION = SECTIONS["dispatch"]
RANKED_SHOWN = 10


def _number(form: Mapping[str, str], name: str, label: str) -> float:
    raw = (form.get(name) or "").strip().removesuffix("%")
    try:
        value = float(raw)
    except ValueError:
        raise FormError(name, f"{label}应为数字，收到「{raw[:20]}」。") from None
    if not math.isfinite(value):
        raise FormError(name, f"{label}应为有限的数字。")
    return value


def policy_from_form(current: DispatchPolicy, form: Mapping[str, str]) -> DispatchPolicy:
    """The current policy with the form's weights (percent) and offer timeout (minutes)."""
    weights = {key: _number(form, f"weight.{key}", f"{label}权重") / 100 for key, label in WEIGHT_LABELS.items()}
    for key, value in weights.items():
        if value < 0:
            raise FormError(f"weight.{key}", f"{WEIGHT_LABELS[key]}权重不能为负数。")
    try:
        parsed = DispatchWeights(**weights)
    except DispatchPolicyError as error:
        total = sum(weights.values()) * 100
        raise FormError("weights", f"四项权重之和必须为 100%（当前 {total:g}%）。"
                        if error.data.get("field") == "weights" else error.user_message) from error
    minutes = _number(form, "offer_timeout", "接单时限")
    try:
        return replace(current, weights=parsed, offer_timeout_s=minutes * 60)
    except DispatchPolicyError as error:
        raise FormError("offer_timeout", error.user_message) from error


def form_values(policy: DispatchPolicy) -> dict[str, str]:
    values = {f"weight.{k}": f"{v * 100:g}" for k, v in policy.weights.to_dict().items()}
    values["offer_timeout"] = f"{policy.offer_timeout_s / 60:g}"
    return values


async def _current(request: web.Request) -> tuple[int, DispatchPolicy]:
    async with runtime_of(request).uow() as uow:
        latest = await uow.latest_config(SECTION.kind)
    return (0, DispatchPolicy()) if latest is None else (latest[0], DispatchPolicy.from_dict(latest[1]))


async def ranking(request: web.Request, session: StaffSession, number: str, proposed: DispatchPolicy) -> Table:
    """A sample ticket's candidates under the current and the proposed policy (the chat's 测试派单, twice)."""
    runtime = runtime_of(request)
    service = runtime.service
    async with runtime.uow() as uow:
        ctx = Context(uow=uow, clock=service.clock, actor=session.person, service=service)
        try:
            ticket = await ctx.ticket(number, lock=False)
        except TicketbotError as error:
            raise FormError("sample", error.user_message) from error
        if not ticket.category:
            raise FormError("sample", f"工单 {ticket.number} 还没有分类，无法试算派单。")
        directory = uow.dispatch_store()
        dispatch_request = request_for(ticket, await place_of(ctx, ticket, directory))
        live = live_index(service)
        _version, _policy, now_ranked, _excluded = await live.explain(
            directory, dispatch_request, lambda: current_policy(ctx), ctx.now, limit=None)
        new_ranked = rank_candidates(dispatch_request, live.index, proposed, ctx.now, limit=None)
    new_rank = {c.person_id: c for c in new_ranked}
    rows = []
    for c in now_ranked[:RANKED_SHOWN]:
        n = new_rank.get(c.person_id)
        rows.append([c.name, f"{c.rank}（{c.score:.3f}）", f"{n.rank}（{n.score:.3f}）" if n else "—",
                     "｜".join(f"{comp.label} {comp.normalised:.2f}" for comp in c.components)])
    return Table(f"试算工单 {ticket.number}（{ticket.category}）的候选排序", ["技师", "当前名次（得分）",
                 "修改后名次（得分）", "得分构成"], rows, empty="没有符合条件的候选技师。")


async def page(request: web.Request, session: StaffSession, *, error: FormError | None = None,
               form: Mapping[str, str] | None = None, status: int = 200) -> web.Response:
    runtime = runtime_of(request)
    version, policy = await _current(request)
    async with runtime.uow() as uow:
        rows = await history(uow, SECTION, runtime.service.config.timezone)
    values = {**form_values(policy), **{k: v for k, v in (form or {}).items() if k != "csrf_token"}}
    return render(request, session, "console/admin_dispatch.html", status=status, section=SECTION, version=version,
                  policy=policy, history=rows, error=error, values=values, labels=WEIGHT_LABELS,
                  describe=policy.describe(), saved=request.query.get("saved"))


async def preview(request: web.Request, session: StaffSession, form: Mapping[str, str]) -> web.Response:
    version, policy = await _current(request)
    proposed = policy_from_form(policy, form)
    lines = SECTION.diff(policy.to_dict(), proposed.to_dict()) if proposed != policy else []
    if proposed.offer_timeout_s != policy.offer_timeout_s:
        lines = [line for line in lines if not line.startswith("offer_timeout_s")]
        lines.append(f"接单时限：{format_seconds(policy.offer_timeout_s)} → {format_seconds(proposed.offer_timeout_s)}")
    sample = (form.get("sample") or "").strip()
    tables = [await ranking(request, session, sample, proposed)] if sample else []
    hidden = [(k, v) for k, v in form_values(proposed).items()] + [("based_on", str(version))]
    return render_preview(request, session, SECTION.title, Preview(
        title=f"预览：派单规则（当前 {'出厂默认' if version == 0 else f'v{version}'}）",
        action=f"{ADMIN_ROOT}dispatch/save", hidden=hidden, lines=lines, tables=tables,
        blocked="" if lines else "派单规则没有变化，无需保存。", back=f"{ADMIN_ROOT}dispatch"))


async def save(request: web.Request, session: StaffSession, form: Mapping[str, str]) -> web.StreamResponse:
    version, policy = await _current(request)
    proposed = policy_from_form(policy, form)
    if int_field(form, "based_on") != version:
        raise FormError("based_on", "派单规则在您预览之后被修改过，请重新预览。", status=409)
    if proposed == policy:
        raise FormError("weights", "派单规则没有变化。")
    saved = version
    if proposed.weights != policy.weights:
        saved = await run_as(request, session.person, SetDispatchWeights(tuple(proposed.weights.to_dict().items())),
                             field="weights")
    if proposed.offer_timeout_s != policy.offer_timeout_s:
        saved = await run_as(request, session.person, SetOfferTimeout(proposed.offer_timeout_s), field="offer_timeout")
    return saved_redirect("dispatch", saved)


async def rollback(request: web.Request, session: StaffSession, version: int, based_on: int) -> object:
    return await run_as(request, session.person, RollbackDispatchPolicy(version), field="version")
