"""The one normalisation of identifiers (core/masterdata/identifiers.py): SN, plate, VIN, phone,
masking, and identifiers found in real fault sentences."""

from __future__ import annotations

import pytest

from core.masterdata.identifiers import (
    find_identifiers,
    is_vin,
    mask_phone,
    normalise_phone,
    normalise_plate,
    normalise_sn,
    normalise_vin,
    vin_check_digit,
)

# --- SN ---


@pytest.mark.parametrize("written", [
    "KFR-35GW/N8HR3", "KFR35GW-N8HR3", "kfr35gw-n8hr3", "KFR 35GW N8HR3", "KFR_35GW.N8HR3",
    "ＫＦＲ－３５ＧＷ／Ｎ８ＨＲ３",  # full-width, as Chinese input methods type it
    "ｋｆｒ３５ｇｗ　ｎ８ｈｒ３",  # full-width lower case and an ideographic space
    " KFR-35GW/N8HR3\t\n", "KFR--35GW//N8HR3",
])
def test_sn_forms_of_one_unit_are_equal(written: str) -> None:
    assert normalise_sn(written) == "KFR35GWN8HR3"


def test_sn_keeps_what_is_not_a_separator() -> None:
    assert normalise_sn("sn:AB12#3") == "SN:AB12#3"
    assert normalise_sn("0012345") == "0012345"  # leading zeros are significant


@pytest.mark.parametrize("empty", ["", "   ", "-/_ .", "－／＿　．"])
def test_an_sn_of_only_separators_is_refused(empty: str) -> None:
    with pytest.raises(ValueError, match="设备编号为空"):
        normalise_sn(empty)


def test_an_overlong_sn_is_refused() -> None:
    assert len(normalise_sn("A" * 64)) == 64
    with pytest.raises(ValueError, match="设备编号过长"):
        normalise_sn("A" * 65)


# --- plates ---


@pytest.mark.parametrize(("written", "plate"), [
    ("沪A12345", "沪A12345"),
    ("沪a12345", "沪A12345"),
    ("沪A·12345", "沪A12345"),
    ("沪A 12345", "沪A12345"),
    ("沪 A-12345", "沪A12345"),
    ("沪Ａ１２３４５", "沪A12345"),  # full-width letter and digits
    ("京B8X9Y7", "京B8X9Y7"),
    ("粤BD12345", "粤BD12345"),  # new energy: 6 after the letter
    ("粤B12345F", "粤B12345F"),  # new energy, large vehicle
    ("粤B1234学", "粤B1234学"),  # driving-school car
    ("粤Z1234港", "粤Z1234港"),
    ("京A1234警", "京A1234警"),
    ("鲁B1234挂", "鲁B1234挂"),
    ("川A・12345", "川A12345"),
    ("新A12345", "新A12345"),
    ("藏A12345", "藏A12345"),
])
def test_plates(written: str, plate: str) -> None:
    assert normalise_plate(written) == plate


@pytest.mark.parametrize("not_a_plate", [
    "", "A12345", "沪12345", "沪A1234", "沪A1234567", "港A12345",  # 港 is no province character here
    "沪I12345", "沪O12345", "沪AI2345",  # plates use neither I nor O
    "沪A12345学", "沪A123学", "KFR35GW", "沪A1234$",
])
def test_not_plates(not_a_plate: str) -> None:
    assert normalise_plate(not_a_plate) is None


# --- VIN ---


@pytest.mark.parametrize("vin", [
    "1M8GDM9AXKP042788",  # the ISO 3779 example: check digit X
    "LFV3A23CXH3100007",  # a Chinese WMI with an X check digit
    "LSGPC52U6AF102554",
    "LVSHCAMB1CE054249",
    "11111111111111111",
])
def test_valid_vins(vin: str) -> None:
    assert normalise_vin(vin) == vin
    assert normalise_vin(vin.lower()) == vin
    assert normalise_vin(f" {vin[:8]}-{vin[8:]} ") == vin
    assert is_vin(vin)


def test_full_width_vin() -> None:
    assert normalise_vin("ＬＳＧＰＣ５２Ｕ６ＡＦ１０２５５４") == "LSGPC52U6AF102554"


@pytest.mark.parametrize(("vin", "message"), [
    ("LSGPC52U7AF102554", "VIN 校验位不正确（第 9 位应为 6）"),
    ("1M8GDM9A1KP042788", "第 9 位应为 X"),
    ("LSGPC52U6AF10255", "VIN 应为 17 位（现为 16 位）"),
    ("LSGPC52U6AF1025544", "VIN 应为 17 位（现为 18 位）"),
    ("LSGPC52U6AF1O2554", "不能包含字母 I、O、Q"),
    ("LSGPI52U6AF102554", "不能包含字母 I、O、Q"),
    ("LSGPQ52U6AF102554", "不能包含字母 I、O、Q"),
    ("LSGPC52U6AF10255#", "只能包含字母和数字"),
    ("", "VIN 应为 17 位（现为 0 位）"),
])
def test_bad_vins(vin: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        normalise_vin(vin)
    assert not is_vin(vin)


def test_check_digit_ignores_position_nine() -> None:
    assert vin_check_digit("1M8GDM9A0KP042788") == vin_check_digit("1M8GDM9A9KP042788") == "X"


# --- phones ---


@pytest.mark.parametrize(("written", "phone"), [
    ("13812345678", "13812345678"),
    ("138-1234-5678", "13812345678"),
    ("138 1234 5678", "13812345678"),
    ("+86 138 1234 5678", "13812345678"),
    ("+86-13812345678", "13812345678"),
    ("008613812345678", "13812345678"),
    ("8613812345678", "13812345678"),
    ("１３８１２３４５６７８", "13812345678"),  # full-width digits
    ("(021) 6458-1234", "02164581234"),
    ("021-64581234", "02164581234"),
    ("0755-8888888", "07558888888"),
    ("64581234", "64581234"),  # a local number without area code
    ("021-64581234转123", "02164581234"),  # the extension is not part of the number
    ("021-64581234 ext. 8", "02164581234"),
    ("400-820-8820", "4008208820"),
])
def test_phones(written: str, phone: str) -> None:
    assert normalise_phone(written) == phone


@pytest.mark.parametrize("not_a_phone", [
    "", "无", "123456", "12345678901", "10012345678", "138123456789", "0211234567890", "1381234567",
])
def test_not_phones(not_a_phone: str) -> None:
    assert normalise_phone(not_a_phone) is None


@pytest.mark.parametrize(("phone", "masked"), [
    ("13812345678", "138****5678"),
    ("+86 138-1234-5678", "138****5678"),
    ("02164581234", "021****1234"),
    ("64581234", "645****1234"),
    ("12345", "****45"),
    ("", ""),
    (None, ""),
])
def test_masking(phone: str | None, masked: str) -> None:
    assert mask_phone(phone) == masked


# --- identifiers in fault text ---


@pytest.mark.parametrize(("text", "found"), [
    ("沪A·12345 刹车异响，方向盘抖动", [("plate", "沪A12345")]),
    ("我的车牌是粤BD12345，仪表盘亮故障灯", [("plate", "粤BD12345")]),
    ("车架号LSGPC52U6AF102554，发动机抖", [("vin", "LSGPC52U6AF102554")]),
    ("VIN: lsgpc52u6af102554 启动不了", [("vin", "LSGPC52U6AF102554")]),
    ("客厅空调KFR-35GW/N8HR3不制冷，滴水", [("sn", "KFR35GWN8HR3")]),
    ("空调ＫＦＲ－３５ＧＷ不制冷", [("sn", "KFR35GW")]),
    ("电梯编号 DT-2023-0815 困人了", [("sn", "DT20230815")]),
    ("沪A12345 车架号 LFV3A23CXH3100007 空调 KFR-35GW/N8HR3",
     [("plate", "沪A12345"), ("vin", "LFV3A23CXH3100007"), ("sn", "KFR35GWN8HR3")]),
    ("KFR-35GW/N8HR3 又坏了，上次也是 kfr35gw-n8hr3", [("sn", "KFR35GWN8HR3")]),  # once
])
def test_identifiers_in_fault_sentences(text: str, found: list[tuple[str, str]]) -> None:
    assert find_identifiers(text) == found


@pytest.mark.parametrize("text", [
    "空调不制冷，电话13812345678，地址浦东新区张江路1号",  # a phone is digits only
    "2024-05-01 起就漏水，已经3天了",  # a date too
    "打印机报错E4，卡纸",  # an error code is too short
    "WiFi连不上，路由器灯不亮",  # a word without digits
    "车架号LSGPC52U7AF102554",  # a VIN with a bad check digit is neither VIN nor... (see below)
])
def test_no_identifier_where_there_is_none(text: str) -> None:
    found = find_identifiers(text)
    assert all(kind != "vin" for kind, _ in found)
    if "LSGPC52U7" not in text:
        assert found == []


def test_a_mistyped_vin_is_still_an_sn_candidate() -> None:
    # A 17-character run with a wrong check digit is no VIN, but intake may still look it up as an SN.
    assert find_identifiers("车架号LSGPC52U7AF102554") == [("sn", "LSGPC52U7AF102554")]


def test_a_plate_inside_a_longer_code_is_not_a_plate() -> None:
    # Province + a letter + 9 digits: no plate; the ASCII run may be a serial number.
    assert find_identifiers("沪A123456789") == [("sn", "A123456789")]
