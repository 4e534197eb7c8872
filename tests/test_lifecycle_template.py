"""Safe template changes: versioned and audited, high-risk needs 确认, dry run, reopen unsigned closures."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from aiohttp.test_utils import TestClient

from core.clock import FixedClock
from core.commands import Transition
from core.errors import NotAllowed
from core.lifecycle.template import ProposeTemplate, risks, set_option
from core.model import TicketStatus
from core.workflow import repair_service_workflow
from tests.conftest import runtime_of
from tests.test_lifecycle_support import (  # noqa: F401
    Person,
    clock_client,
    in_progress,
    report,
    snapshot,
    ticket,
)

S = TicketStatus
GOOD = {"cause_told": "true", "parts_confirmed": "true", "rating": "5"}


async def versions(client: TestClient) -> list[int]:
    async with runtime_of(client).uow() as uow:
        return [r["version"] for r in await uow.config_history("workflow")]


def test_risk_detection() -> None:
    wf = repair_service_workflow()
    assert risks(wf, set_option(wf, "返修期", "14")) == []
    assert risks(wf, set_option(wf, "质检", "开")) == []
    assert risks(wf, set_option(wf, "完工照片", "0")) == ["完工照片从 3 张减为 0 张（取消必填）"]
    assert risks(wf, set_option(wf, "签到照片", "关")) == ["签到照片由必需改为可选"]
    assert risks(set_option(wf, "质检", "开"), wf) == ["质检由必需改为可选"]


async def test_low_risk_change_applies_at_once_and_is_versioned(app_client: TestClient) -> None:
    admin = Person(app_client, "admin")
    await admin.say("模板 设置 返修期 14")
    assert "v1" in await admin.last_text() and "返修期：7 → 14" in await admin.last_text()
    await admin.say("模板 历史")
    assert "v1" in await admin.last_text() and "admin" in await admin.last_text()
    await admin.say("模板")
    assert "返修期=14" in await admin.last_text()
    async with runtime_of(app_client).uow() as uow:
        payload = await uow.config_version("workflow", 1)
    assert payload is not None and payload["options"]["rework_window_days"] == 14


async def test_high_risk_change_waits_for_confirmation_and_can_be_dry_run(app_client: TestClient) -> None:
    number = await in_progress(app_client, "cust-tpl", "tech-wang", photos=1)
    admin, tech = Person(app_client, "admin"), Person(app_client, "tech-wang")
    await admin.say("模板 设置 完工照片 0")
    assert "高风险" in await admin.last_text() and "回复「确认」" in await admin.last_text()
    assert await versions(app_client) == []

    before = await snapshot(app_client, number)
    await admin.say(f"模板 试运行 {number}")
    dry = await admin.last_text()
    assert "按待确认的草案" in dry and "照片 ≥0（现有 1 ✓）" in dry and "照片 ≥3（现有 1 ✗）" in dry
    assert await snapshot(app_client, number) == before

    await tech.say("完工")  # still the old template
    assert "至少 3 张" in await tech.last_text()
    await admin.say("确认")
    assert "v1" in await admin.last_text()
    await tech.say("完工")
    assert (await ticket(app_client, number)).status == S.PENDING_SIGNOFF
    await admin.say("确认")
    assert "没有待确认的操作" in await admin.last_text()


async def test_abandon_and_other_people_cannot_confirm(app_client: TestClient) -> None:
    admin, boss = Person(app_client, "admin"), Person(app_client, "sup-li")
    await admin.say("模板 设置 签到照片 关")
    await boss.say("确认")
    assert "没有待确认" in await boss.last_text()
    await boss.say("模板 设置 签到照片 关")
    assert "没有权限" in await boss.last_text()
    await admin.say("放弃")
    assert "已放弃" in await admin.last_text()
    await admin.say("确认")
    assert "没有待确认" in await admin.last_text()
    assert await versions(app_client) == []


async def test_a_draft_expires(clock_client: tuple[TestClient, FixedClock]) -> None:  # noqa: F811
    client, clock = clock_client
    admin = Person(client, "admin")
    await admin.say("模板 设置 完工照片 1")
    clock.advance(timedelta(minutes=16))
    await admin.say("确认")
    assert "没有待确认" in await admin.last_text()
    assert await versions(client) == []


async def test_even_a_confirmed_template_cannot_close_without_a_signature(app_client: TestClient) -> None:
    runtime = runtime_of(app_client)
    number = await in_progress(app_client, "cust-force", "tech-wang", photos=3)
    await Person(app_client, "tech-wang").say("完工")
    admin = Person(app_client, "admin")
    template = repair_service_workflow().to_dict()
    template["transitions"].append({"name": "force_close", "sources": ["pending_signoff"], "target": "closed",
                                    "roles": ["admin"], "label": "强制结案", "guards": []})
    async with runtime.uow() as uow:
        admin_person, customer = await uow.get_person("admin"), await uow.get_person("cust-force")
    # A whole template is longer than a chat message: the command itself, as the CLI or an API would send it.
    await runtime.service.handle(ProposeTemplate("import", (json.dumps(template),)), admin_person)  # type: ignore[arg-type]
    assert "新增了进入「已结案」的步骤「强制结案」" in await admin.last_text()
    await admin.say("确认")
    await admin.say("模板 去掉检查 sign_off signoff")
    assert "去掉了检查「signoff」" in await admin.last_text()
    await admin.say("确认")
    assert await versions(app_client) == [2, 1]

    before = await snapshot(app_client, number)
    with pytest.raises(NotAllowed, match="任何途径都不能结案"):
        await runtime.service.handle(Transition(number, "force_close"), admin_person)  # type: ignore[arg-type]
    with pytest.raises(NotAllowed, match="任何途径都不能结案"):
        await runtime.service.handle(Transition(number, "sign_off"), customer)  # type: ignore[arg-type]
    assert await snapshot(app_client, number) == before
    # The customer's real signature still closes it.
    card = await Person(app_client, "cust-force").last_card("signoff")
    await Person(app_client, "cust-force").press(card["id"], "sign", GOOD)
    assert (await ticket(app_client, number)).status == S.CLOSED


async def test_quality_check_step_when_the_template_enables_it(app_client: TestClient) -> None:
    admin, qa, tech = Person(app_client, "admin"), Person(app_client, "qa-sun"), Person(app_client, "tech-wang")
    await admin.say("模板 设置 质检 开")
    number = await in_progress(app_client, "cust-qc", "tech-wang", photos=3)
    await tech.say("完工")
    assert (await ticket(app_client, number)).status == S.PENDING_QC
    card = await qa.last_card("task")
    before = await snapshot(app_client, number)
    await qa.press(card["id"], "fail", {"reason": ""})
    assert "写明原因" in await qa.last_text()
    assert await snapshot(app_client, number) == before
    await qa.say(f"质检不通过 {number} 管路渗漏")
    assert (await ticket(app_client, number)).status == S.IN_PROGRESS
    for _ in range(3):
        await tech.image()
    await tech.say("完工")
    await qa.say(f"质检通过 {number}")
    assert (await ticket(app_client, number)).status == S.PENDING_SIGNOFF
    assert await Person(app_client, "cust-qc").last_card("signoff")


async def test_reopen_every_closed_ticket_without_a_signature(app_client: TestClient) -> None:
    runtime = runtime_of(app_client)
    legacy = await report(app_client, "cust-legacy")
    # A ticket closed without a signature, as the CT-tube bug left them (written straight to storage).
    async with runtime.uow() as uow:
        t = await uow.get_ticket(legacy, lock=True)
        assert t is not None
        t.status, t.assignee_id, t.closed_at = S.CLOSED, "tech-wang", t.created_at
        await uow.save_ticket(t)
        await uow.commit()
    signed = await in_progress(app_client, "cust-signed", "tech-wang", photos=3)
    await Person(app_client, "tech-wang").say(f"完工 {signed}")
    card = await Person(app_client, "cust-signed").last_card("signoff")
    await Person(app_client, "cust-signed").press(card["id"], "sign", GOOD)

    boss = Person(app_client, "sup-li")
    await boss.say("重开未签字工单")
    assert "没有权限" in await boss.last_text()
    admin = Person(app_client, "admin")
    await admin.say("重开未签字工单")
    assert "共有 1 张" in await admin.last_text() and legacy in await admin.last_text()
    assert (await ticket(app_client, legacy)).status == S.CLOSED  # nothing before 确认
    await admin.say("确认")
    assert "重开了 1 张" in await admin.last_text()
    assert (await ticket(app_client, legacy)).status == S.REOPENED
    assert (await ticket(app_client, signed)).status == S.CLOSED
    assert "重新打开" in await Person(app_client, "cust-legacy").last_text()
    await admin.say("重开未签字工单")
    assert "没有缺少客户签字" in await admin.last_text()
