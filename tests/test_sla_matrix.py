"""The SLA matrix: names, the shipped defaults, validation and the JSON round trip."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from core.errors import InvalidInput
from core.sla.matrix import ClockMode, Impact, Priority, SlaCell, SlaConfigError, SlaMatrix, TimeBand, parse_band


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("紧急", Priority.URGENT),
        ("urgent", Priority.URGENT),
        (" URGENT ", Priority.URGENT),
        ("常规", Priority.NORMAL),
        ("normal", Priority.NORMAL),
        ("咨询", Priority.CONSULT),
        ("consult", Priority.CONSULT),
    ],
)
def test_priority_names(text: str, expected: Priority) -> None:
    assert Priority.parse(text) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("单用户", Impact.USER),
        ("user", Impact.USER),
        ("部门", Impact.DEPARTMENT),
        ("department", Impact.DEPARTMENT),
        ("全厂", Impact.PLANT),
        ("全厂·产线停机", Impact.PLANT),
        ("全厂・产线停机", Impact.PLANT),
        ("产线停机", Impact.PLANT),
        ("plant", Impact.PLANT),
    ],
)
def test_impact_names(text: str, expected: Impact) -> None:
    assert Impact.parse(text) is expected


def test_unknown_names_are_refused_in_chinese() -> None:
    with pytest.raises(InvalidInput) as info:
        Priority.parse("很急")
    assert info.value.user_message == "无法识别的优先级「很急」，可选：紧急 / 常规 / 咨询"
    with pytest.raises(InvalidInput) as info:
        Impact.parse("全公司")
    assert "单用户 / 部门 / 全厂" in info.value.user_message
    assert parse_band("holiday") is TimeBand.HOLIDAY


def test_default_matrix_has_27_sensible_cells() -> None:
    m = SlaMatrix.default()
    assert len(m) == 27
    assert len({cell.key for cell in m}) == 27
    top = m.cell(Priority.URGENT, Impact.PLANT, TimeBand.WORKING)
    assert (top.response, top.resolution, top.clock) == (timedelta(minutes=15), timedelta(hours=2), ClockMode.WALL)
    for cell in m:
        if cell.priority is Priority.URGENT:
            assert cell.clock is ClockMode.WALL, cell.label
        if cell.priority is Priority.CONSULT:
            assert cell.clock is ClockMode.BUSINESS, cell.label
        # Consultations are never tighter than normal tickets, normal never tighter than urgent.
        if cell.priority is not Priority.URGENT:
            stricter = m.cell(
                Priority.URGENT if cell.priority is Priority.NORMAL else Priority.NORMAL, cell.impact, cell.band
            )
            assert cell.response >= stricter.response and cell.resolution >= stricter.resolution, cell.label


def test_json_round_trip() -> None:
    m = SlaMatrix.default()
    text = m.to_json()
    assert SlaMatrix.from_json(text) == m
    data = json.loads(text)
    assert data["format"] == "ticketbot.sla_matrix/1"
    assert {
        "priority": "紧急",
        "impact": "全厂",
        "band": "工作时间",
        "clock": "wall",
        "response_minutes": 15,
        "resolution_minutes": 120,
    } in data["cells"]
    assert SlaMatrix.from_dict(m.to_dict()) == m


def test_the_shipped_file_is_in_canonical_form() -> None:
    from importlib import resources

    shipped = resources.files("core.sla").joinpath("sla_defaults.json").read_text(encoding="utf-8")
    assert shipped == SlaMatrix.default().to_json()


def test_from_dict_accepts_aliases() -> None:
    data = SlaMatrix.default().to_dict()
    data["cells"][0] = {**data["cells"][0], "priority": "urgent", "impact": "user", "band": "working"}
    assert SlaMatrix.from_dict(data) == SlaMatrix.default()


def test_with_cell_returns_a_new_matrix() -> None:
    m = SlaMatrix.default()
    changed = m.with_cell("常规", "部门", "非工作时间", response=timedelta(hours=3), clock="wall")
    cell = changed.cell(Priority.NORMAL, Impact.DEPARTMENT, TimeBand.OFF_HOURS)
    assert (cell.response, cell.clock) == (timedelta(hours=3), ClockMode.WALL)
    assert cell.resolution == m.cell(Priority.NORMAL, Impact.DEPARTMENT, TimeBand.OFF_HOURS).resolution
    assert m.cell(Priority.NORMAL, Impact.DEPARTMENT, TimeBand.OFF_HOURS).clock is ClockMode.BUSINESS
    assert changed != m
    assert sum(a != b for a, b in zip(m, changed, strict=True)) == 1


def test_missing_cells_are_named() -> None:
    data = SlaMatrix.default().to_dict()
    del data["cells"][-1]
    with pytest.raises(SlaConfigError) as info:
        SlaMatrix.from_dict(data)
    assert "缺少 1 个单元格" in info.value.user_message
    assert "咨询×全厂×节假日" in info.value.user_message


def test_duplicate_cells_are_refused() -> None:
    cells = list(SlaMatrix.default())
    with pytest.raises(SlaConfigError, match="重复"):
        SlaMatrix([*cells, cells[0]])


@pytest.mark.parametrize("minutes", [0, -5, "15", None, True])
def test_durations_must_be_positive_minutes(minutes: object) -> None:
    data = SlaMatrix.default().to_dict()
    data["cells"][3]["response_minutes"] = minutes
    with pytest.raises(SlaConfigError) as info:
        SlaMatrix.from_dict(data)
    assert "第 4 个单元格" in info.value.user_message


def test_cell_invariants() -> None:
    with pytest.raises(SlaConfigError, match=r"响应时限.*不能长于解决时限"):
        SlaCell(Priority.URGENT, Impact.PLANT, TimeBand.WORKING, timedelta(hours=3), timedelta(hours=2), ClockMode.WALL)
    with pytest.raises(SlaConfigError, match="正数"):
        SlaMatrix.default().with_cell("紧急", "全厂", "工作时间", response=timedelta(0))


def test_malformed_json_and_fields() -> None:
    with pytest.raises(SlaConfigError, match="JSON"):
        SlaMatrix.from_json("{not json")
    with pytest.raises(SlaConfigError, match="cells"):
        SlaMatrix.from_dict({"format": "ticketbot.sla_matrix/1"})
    data = SlaMatrix.default().to_dict()
    del data["cells"][0]["clock"]
    with pytest.raises(SlaConfigError, match="缺少字段：clock"):
        SlaMatrix.from_dict(data)
    data = SlaMatrix.default().to_dict()
    data["cells"][0]["clock"] = "sometimes"
    with pytest.raises(SlaConfigError, match="计时方式"):
        SlaMatrix.from_dict(data)
