"""Field mappings per connected system (issue 23): checked whole at save time with the line of every
problem, versioned (dry run, history, diff, rollback) through the CLI and the API, and applied to
real HTTP requests (a ticket in MES's own field names, a transition by MES's status name) and to the
webhook bodies MES receives (the golden fields stay ours)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from core.hub import mappings
from core.hub.mappings import MappingRejected, parse
from tests.api_v1_support import api, register, sqlite_api  # noqa: F401
from tests.conftest import runtime_of
from tests.fakes.webhook_receiver import WebhookReceiver
from tests.test_lifecycle_support import ticket
from tests.test_webhooks import _client, receiver, subscribe, until  # noqa: F401

PROBLEM = "application/problem+json"
CATEGORIES = ("电控类", "机械类")
MES = """# MES 的字段
fields:
  委托方名称: customer.name
  联系电话: customer.phone
  故障描述: description
  MES单号: external_ref
  故障代码: category
  紧急程度: priority
  工单状态: status
values:
  category: {E01: 电控类, E02: 机械类}
  priority: {A: 紧急, B: 常规}
states:
  待派工: [pending_dispatch, triage]
  处理中: [dispatched, accepted, checked_in, in_progress]
  已完工: closed
  已取消: cancelled
ignore: [备注]
"""
ADMIN = ["tickets:read", "tickets:write", "hub:admin", "hub:read"]


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    # The per-process cache is keyed by client name; each test has its own database.
    mappings.forget()
    mappings.install()  # a test elsewhere may have put its own body mapper in place
    yield
    mappings.forget()


def problems(text: str) -> list[tuple[int, str]]:
    with pytest.raises(MappingRejected) as refused:
        parse("mes", text, categories=CATEGORIES)
    return refused.value.problems


def test_a_good_mapping_maps_both_ways() -> None:
    mapping = parse("mes", MES, categories=CATEGORIES)
    ours = mapping.theirs_to_ours({"委托方名称": "张三", "联系电话": "13800138000", "故障描述": "电机过热",
                                   "MES单号": "M-1", "故障代码": "E01", "紧急程度": "A", "备注": "内部"})
    assert ours == {"customer": {"name": "张三", "phone": "13800138000"}, "description": "电机过热",
                    "external_ref": "M-1", "category": "电控类", "priority": "紧急"}
    assert str(mapping.state_of("处理中")) == "dispatched"
    assert mapping.state_of("accept") is None
    theirs = mapping.ours_to_theirs({"status": "accepted", "ticket": {
        "number": "GD1", "status": "accepted", "category": "机械类", "priority": "常规",
        "external_refs": {"mes": "M-1", "k3": "K-9"}}})
    assert theirs["status"] == "accepted"  # the golden field is ours
    assert theirs["ticket"] == {"number": "GD1", "工单状态": "处理中", "故障代码": "E02", "紧急程度": "B",
                                "external_refs": {"mes": "M-1", "k3": "K-9"}, "MES单号": "M-1"}


def test_two_fields_mapped_to_one_is_refused_naming_both_lines() -> None:
    found = problems("fields:\n  委托方名称: customer.name\n  客户: customer.name\n")
    assert found == [(3, "「客户」和「委托方名称」（第 2 行）都映射到 customer.name：两个字段不能映射到同一个字段。")]


def test_unknown_states_categories_fields_and_sections_are_named_by_line() -> None:
    text = ("fields:\n  单号: external_ref\n  等级: level\n"  # 3: unknown field of ours
            "values:\n  category:\n    E01: 电控类\n    E09: 液压类\n"  # 7: unknown category
            "  priority: {A: 特急}\n"  # 8: unknown priority
            "states:\n  完成: finished\n  关闭: [closed, cancelled]\n  作废: cancelled\n"  # 10, 12
            "ignore: [单号]\n"  # 13: mapped and ignored
            "extras: 1\n")  # 14: unknown section
    found = dict(problems(text))
    assert sorted(found) == [3, 7, 8, 10, 12, 13, 14], found
    assert "level" in found[3] and "液压类" in found[7] and "特急" in found[8]
    assert "finished" in found[10] and "不是我方状态" in found[10]
    assert "cancelled" in found[12] and "关闭" in found[12]
    assert "单号" in found[13] and "extras" in found[14]


def test_bad_yaml_and_repeated_keys_are_named_by_line() -> None:
    assert problems("fields:\n  a: description\n  b: [unclosed\n")[0][0] in {3, 4}
    assert problems("fields:\n  a: description\n  a: store\n") == [(3, "「fields.a」写了两次。")]
    assert problems("- just\n- a list\n")[0][0] == 1
    assert parse("mes", '{"fields": {"单号": "external_ref"}}', categories=()).fields == {"单号": "external_ref"}


async def test_put_get_dry_run_history_rollback_over_http(api: TestClient) -> None:  # noqa: F811
    admin = await register(api, "hubadmin", ADMIN)
    await register(api, "mes", ["tickets:write"])
    sample = {"委托方名称": "李四", "故障代码": "E02", "陌生字段": 1}
    dry = await api.put("/api/v1/mappings/mes", json={"source": MES, "dry_run": True, "sample": sample},
                        headers=admin)
    assert dry.status == 200, await dry.text()
    body = await dry.json()
    assert body["dry_run"] is True and body["version"] is None and "+  委托方名称: customer.name" in body["diff"]
    assert body["result"] == {"inbound": {"customer": {"name": "李四"}, "category": "机械类", "陌生字段": 1},
                              "unknown_fields": ["陌生字段"]}
    assert (await api.get("/api/v1/mappings/mes", headers=admin)).status == 404  # nothing saved
    first = await (await api.put("/api/v1/mappings/mes", json={"source": MES, "note": "初版"}, headers=admin)).json()
    assert first["version"] == 1
    second_text = MES.replace("  紧急程度: priority\n", "")
    second = await (await api.put("/api/v1/mappings/mes", json={"source": second_text}, headers=admin)).json()
    assert second["version"] == 2 and "-  紧急程度: priority" in second["diff"]
    shown = await (await api.get("/api/v1/mappings/mes", headers=admin)).json()
    assert shown["version"] == 2 and shown["source"] == second_text and "紧急程度" not in shown["mapping"]["fields"]
    assert [h["version"] for h in shown["history"]] == [2, 1] and shown["history"][1]["note"] == "初版"
    old = await (await api.get("/api/v1/mappings/mes?version=1", headers=admin)).json()
    assert old["source"] == MES
    back = await api.post("/api/v1/mappings/mes/rollback", json={"version": 1}, headers=admin)
    assert back.status == 200, await back.text()
    assert (await back.json())["version"] == 3
    assert (await (await api.get("/api/v1/mappings/mes", headers=admin)).json())["source"] == MES
    async with runtime_of(api).uow() as uow:
        events = await uow.hub().latest_audit("field_mapping_saved")
    assert [e["payload"]["version"] for e in events] == [3, 2, 1] and events[0]["actor_id"] == "api:hubadmin"
    # an object works as well as the text
    as_object = await api.put("/api/v1/mappings/mes", json={"mapping": {"fields": {"单号": "external_ref"}}},
                              headers=admin)
    assert as_object.status == 200 and (await as_object.json())["mapping"]["fields"] == {"单号": "external_ref"}


async def test_bad_mappings_and_wrong_scopes_over_http(sqlite_api: TestClient) -> None:  # noqa: F811
    admin = await register(sqlite_api, "hubadmin", ADMIN)
    mes = await register(sqlite_api, "mes", ["tickets:write", "masterdata:write"])
    bad = "fields:\n  委托方名称: customer.name\n  客户: customer.name\nstates:\n  完成: done\n"
    resp = await sqlite_api.put("/api/v1/mappings/mes", json={"source": bad}, headers=admin)
    assert resp.status == 422 and resp.content_type == PROBLEM
    problem = await resp.json()
    assert [e["line"] for e in problem["errors"]] == [3, 5] and problem["errors"][0]["field"] == "line 3"
    assert "第 3 行" in problem["detail"] and "done" in problem["detail"]
    assert (await sqlite_api.get("/api/v1/mappings/mes", headers=admin)).status == 404  # nothing saved
    forbidden = await sqlite_api.put("/api/v1/mappings/mes", json={"source": MES}, headers=mes)
    assert forbidden.status == 403 and (await forbidden.json())["required_scope"] == "hub:admin"
    assert (await sqlite_api.get("/api/v1/mappings/mes", headers=mes)).status == 403
    nobody = await sqlite_api.put("/api/v1/mappings/nobody", json={"source": MES}, headers=admin)
    assert nobody.status == 404
    both = await sqlite_api.put("/api/v1/mappings/mes", json={"source": MES, "mapping": {}}, headers=admin)
    assert both.status == 422
    no_version = await sqlite_api.post("/api/v1/mappings/mes/rollback", json={"version": 9}, headers=admin)
    assert no_version.status == 404
    # the API_TOKEN admin reader may read (hub:read), never write
    reader = {"Authorization": "Bearer admin-read-token"}
    await sqlite_api.put("/api/v1/mappings/mes", json={"source": MES}, headers=admin)
    assert (await sqlite_api.get("/api/v1/mappings/mes", headers=reader)).status == 200
    assert (await sqlite_api.put("/api/v1/mappings/mes", json={"source": MES}, headers=reader)).status == 403


async def test_a_ticket_in_their_names_and_a_transition_by_their_status(api: TestClient) -> None:  # noqa: F811
    admin = await register(api, "hubadmin", ADMIN)
    mes = await register(api, "mes", ["tickets:read", "tickets:write"])
    assert (await api.put("/api/v1/mappings/mes", json={"source": MES}, headers=admin)).status == 200
    theirs = {"委托方名称": "张三", "联系电话": "13800138000", "故障描述": "控制柜跳闸，电机不转", "MES单号": "M-100",
              "故障代码": "E02", "紧急程度": "A", "备注": "内部备注，忽略"}
    resp = await api.post("/api/v1/tickets", json=theirs, headers=mes)
    assert resp.status == 201, await resp.text()
    body = await resp.json()
    assert body["external_refs"] == {"mes": "M-100"} and body["priority"] == "紧急"
    made = await ticket(api, body["number"])
    assert made.description == "控制柜跳闸，电机不转"
    assert made.category == "机械类" or made.data.get("api_category") == "机械类"
    async with runtime_of(api).uow() as uow:
        customer = await uow.get_person(made.customer_id)
    assert customer is not None and customer.name == "张三"
    # an unknown field of theirs: 422 naming it (备注 is in `ignore`, so it passed)
    unknown = await api.post("/api/v1/tickets", json={**theirs, "MES单号": "M-101", "车间": "三号线"}, headers=mes)
    assert unknown.status == 422 and unknown.content_type == PROBLEM
    problem = await unknown.json()
    assert "车间" in problem["detail"] and {"field": "车间", "message": "unknown field"} in problem["errors"]
    twice = await api.post("/api/v1/tickets", json={**theirs, "MES单号": "M-102", "description": "又一遍"},
                           headers=mes)
    assert twice.status == 422 and "故障描述" in (await twice.json())["detail"]
    # their status names: 已完工 is closed → the status lock (no signature: 409); 已取消 → cancel
    number = body["number"]
    locked = await api.post(f"/api/v1/tickets/{number}/transitions", json={"name": "已完工"}, headers=mes)
    assert locked.status == 409 and (await locked.json())["reason"] == "signature_missing"
    same = await api.post(f"/api/v1/tickets/{number}/transitions",
                          json={"name": "处理中" if made.status.value == "dispatched" else "待派工"}, headers=mes)
    assert same.status == 200 and (await same.json())["status"] == made.status.value  # already there: no change
    cancelled = await api.post(f"/api/v1/tickets/{number}/transitions", json={"name": "已取消", "reason": "重复"},
                               headers=mes)
    assert cancelled.status == 200, await cancelled.text()
    assert (await cancelled.json())["status"] == "cancelled"
    again = await api.post(f"/api/v1/tickets/{number}/transitions", json={"name": "处理中"}, headers=mes)
    assert again.status == 409 and "处理中" in (await again.json())["detail"]
    # a client without a mapping is untouched: our names, and their names are unknown fields
    other = await register(api, "k3", ["tickets:write"])
    plain = await api.post("/api/v1/tickets", json=theirs, headers=other)
    assert plain.status == 422 and "委托方名称" in (await plain.json())["detail"]


@pytest.fixture
async def hub(sqlite_url: str, tmp_path: Path) -> AsyncIterator[TestClient]:
    async for client in _client(sqlite_url, tmp_path, api_token="admin-read-token"):
        yield client


async def test_webhooks_to_a_mapped_system_speak_its_names_golden_fields_ours(
        hub: TestClient, receiver: WebhookReceiver) -> None:  # noqa: F811
    admin = await register(hub, "hubadmin", ADMIN)
    mes_auth = await register(hub, "mes", ["tickets:write"])
    assert (await hub.put("/api/v1/mappings/mes", json={"source": MES}, headers=admin)).status == 200
    _, mes = await subscribe(hub, receiver, "mes", events=["ticket.created"])
    _, erp = await subscribe(hub, receiver, "erp", events=["ticket.created"])
    created = await (await hub.post("/api/v1/tickets", json={
        "委托方名称": "王五", "联系电话": "13900139000", "故障描述": "液压缸漏油", "MES单号": "M-7"},
        headers=mes_auth)).json()
    await until(lambda: len(mes.events) == 1 and len(erp.events) == 1)
    mapped, ours = mes.events[0], erp.events[0]
    assert mes.bad_signatures == 0
    for golden in ("customer_key", "global_id", "status"):
        assert mapped[golden] == ours[golden]
    assert mapped["global_id"] == created["global_id"] and mapped["status"] == ours["ticket"]["status"]
    assert mapped["ticket"]["MES单号"] == "M-7" and "status" not in mapped["ticket"]
    assert mapped["ticket"]["工单状态"] in {"待派工", "处理中"}
    assert "工单状态" not in ours["ticket"] and ours["ticket"]["external_refs"] == {"mes": "M-7"}


def ticketbot(*args: str, url: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "DATABASE_URL"}}
    env.update({"DATABASE_URL": url, "DATA_DIR": str(cwd / "data")})
    return subprocess.run([sys.executable, "-m", "bot.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


def test_cli_set_dry_run_show_history_rollback(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    assert ticketbot("api-client", "add", "mes", "--scopes", "tickets:write", url=url, cwd=tmp_path).returncode == 0
    good, bad, sample = tmp_path / "mes.yaml", tmp_path / "bad.yaml", tmp_path / "sample.json"
    good.write_text(MES, encoding="utf-8")
    bad.write_text("fields:\n  委托方名称: customer.name\n  客户: customer.name\nstates:\n  完成: done\n",
                   encoding="utf-8")
    sample.write_text(json.dumps({"委托方名称": "张三", "故障代码": "E01"}, ensure_ascii=False), encoding="utf-8")
    refused = ticketbot("mapping", "set", "mes", str(bad), url=url, cwd=tmp_path)
    assert refused.returncode == 1
    assert "第 3 行" in refused.stderr and "第 5 行" in refused.stderr and "done" in refused.stderr
    dry = ticketbot("mapping", "set", "mes", str(good), "--dry-run", str(sample), url=url, cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    result: dict[str, Any] = json.loads(dry.stdout)
    assert result["result"]["inbound"] == {"customer": {"name": "张三"}, "category": "电控类"}
    assert json.loads(ticketbot("mapping", "history", "mes", url=url, cwd=tmp_path).stdout) == []
    saved = ticketbot("mapping", "set", "mes", str(good), "--note", "初版", url=url, cwd=tmp_path)
    assert saved.returncode == 0 and json.loads(saved.stdout)["version"] == 1
    good.write_text(MES.replace("ignore: [备注]\n", ""), encoding="utf-8")
    assert json.loads(ticketbot("mapping", "set", "mes", str(good), url=url, cwd=tmp_path).stdout)["version"] == 2
    assert "ignore" not in ticketbot("mapping", "show", "mes", url=url, cwd=tmp_path).stdout
    back = ticketbot("mapping", "rollback", "mes", "1", url=url, cwd=tmp_path)
    assert back.returncode == 0 and json.loads(back.stdout)["version"] == 3
    shown = ticketbot("mapping", "show", "mes", url=url, cwd=tmp_path).stdout
    assert shown.startswith("# mes v3") and "ignore: [备注]" in shown
    history = json.loads(ticketbot("mapping", "history", "mes", url=url, cwd=tmp_path).stdout)
    assert [h["version"] for h in history] == [3, 2, 1] and history[0]["note"] == "rollback to 1"
    unknown = ticketbot("mapping", "set", "nobody", str(good), url=url, cwd=tmp_path)
    assert unknown.returncode == 1 and "no API client named nobody" in unknown.stderr
    assert ticketbot("mapping", "rollback", "mes", "9", url=url, cwd=tmp_path).returncode == 1


async def test_end_to_end_with_a_declarative_mapping(hub: TestClient, receiver: WebhookReceiver) -> None:  # noqa: F811
    """The issue's end to end with MES's own words both ways: filed in its names, `ticket.assigned`
    arrives in its names, its 已完工 before the signature is refused (409), `ticket.signed` arrives
    with its 已完工 after the customer signs."""
    from tests.test_lifecycle_support import Person, accept, png
    from tests.test_signoff import GOOD
    from tests.test_webhooks import ALL

    admin = await register(hub, "hubadmin", ADMIN)
    auth = await register(hub, "mes", ["tickets:write"])
    text = MES.replace("  工单状态: status\n", "  工单状态: status\n  处理人: assignee_id\n").replace(
        "  已完工: closed\n", "  待确认: pending_signoff\n  已完工: closed\n")
    assert (await hub.put("/api/v1/mappings/mes", json={"source": text}, headers=admin)).status == 200
    _, mes = await subscribe(hub, receiver, "mes", ALL)
    created = await hub.post("/api/v1/tickets", json={"委托方名称": "赵六", "联系电话": "13700137000",
                                                      "故障描述": "空调不制冷，外机有异响", "MES单号": "M-77"},
                             headers=auth)
    assert created.status == 201, await created.text()
    number = (await created.json())["number"]
    await until(lambda: any(e["type"] == "ticket.assigned" for e in mes.events))
    assigned = next(e for e in mes.events if e["type"] == "ticket.assigned")["ticket"]
    assert assigned["MES单号"] == "M-77" and assigned["工单状态"] == "处理中" and assigned["处理人"]
    assert "assignee_id" not in assigned and "status" not in assigned
    await accept(hub, number, "tech-wang")
    tech = Person(hub, "tech-wang")
    await tech.location(31.2, 121.5)
    await tech.image(png("checkin"))
    await tech.say(f"开始 {number}")
    for i in range(3):
        await tech.image(png(f"work-{i}"))
    await tech.say(f"完工 {number}")
    early = await hub.post(f"/api/v1/tickets/{number}/transitions", json={"name": "已完工"}, headers=auth)
    assert early.status == 409 and (await early.json())["reason"] == "signature_missing"
    await tech.say(f"现场签字 {number}")
    card = await tech.last_card("signoff")
    await tech.press(card["id"], "sign", GOOD)
    await until(lambda: any(e["ticket"]["工单状态"] == "已完工" for e in mes.events))
    signed = next(i for i, e in enumerate(mes.events) if e["type"] == "ticket.signed")
    closed = next(i for i, e in enumerate(mes.events) if e["ticket"]["工单状态"] == "已完工")
    assert mes.events[signed]["ticket"]["工单状态"] == "待确认" and signed < closed
    assert mes.events[closed]["status"] == "closed"  # the golden field: ours
    assert mes.bad_signatures == 0
    done = await hub.post(f"/api/v1/tickets/{number}/transitions", json={"name": "已完工"}, headers=auth)
    assert done.status == 200 and (await done.json())["status"] == "closed"
