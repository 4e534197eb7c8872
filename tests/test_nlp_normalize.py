"""Normalisation: width, script, case, whitespace; codes stay whole."""

from __future__ import annotations

import pytest

from nlp.normalize import display_form, normalize


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("方向盤抖動", "方向盘抖动"),
        ("發動機異響，聲音很大", "发动机异响,声音很大"),
        ("儀表盤故障燈亮了", "仪表盘故障灯亮了"),
        ("打不著火", "打不着火"),
        ("ＯＢＤ　Ｕ０１００", "obd u0100"),
        ("故障码P0300 还有E1、E4", "故障码p0300 还有e1、e4"),
        ("  多个   空格\t和\n换行  ", "多个 空格 和 换行"),
        ("零\u200b宽\ufeff字符", "零宽字符"),
        ("", ""),
    ],
)
def test_normalize(raw: str, expected: str) -> None:
    assert normalize(raw) == expected


def test_codes_survive_whole() -> None:
    for code in ("OBD", "ECU", "U0100", "P0300", "E1", "E4"):
        assert normalize(f"报{code}了").split("报")[1] == code.lower() + "了"


def test_normalize_is_idempotent() -> None:
    text = "空調顯示Ｅ１，方向盤抖動！！"
    assert normalize(normalize(text)) == normalize(text)


def test_display_form_keeps_case() -> None:
    assert display_form("  ＯＢＤ接口　") == "OBD接口"
