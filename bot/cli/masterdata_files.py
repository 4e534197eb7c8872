"""Master-data import files (`ticketbot import stores|teams|people|customers|assets|contracts`):
columns per kind, parsing and the checks a row can fail without the database. The rows are then
written by core/masterdata/imports.py, which checks what needs the database (unknown stores,
customers, assets; platform ids of someone else).

Every column has a Chinese and an English name, both accepted (and the other aliases listed);
`template(kind)` prints the Chinese header and an example row. A row with any error is left out
whole, every problem in it reported, so one pass over the report fixes the file.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from bot.cli.table_file import cells_of, header_text, map_header, parse_coordinate, read_table
from core.masterdata.identifiers import normalise_phone, normalise_plate, normalise_sn, normalise_vin
from core.masterdata.imports import ImportItem, ImportRecord
from core.masterdata.model import (
    Address,
    AssetRecord,
    ContractRecord,
    CustomerRecord,
    PersonRecord,
    StoreRecord,
    TeamRecord,
)
from core.model import Role


@dataclass(frozen=True, slots=True)
class Column:
    key: str  # the English name, also the report's "field"
    label: str  # the Chinese name (the template's header)
    aliases: tuple[str, ...] = ()
    example: str = ""

    def names(self) -> tuple[str, ...]:
        return (self.label, self.key, *self.aliases)


@dataclass(frozen=True, slots=True)
class Kind:
    name: str
    columns: tuple[Column, ...]
    required: tuple[str, ...]
    parse: Callable[[RowReader], ImportRecord | None]
    # Natural keys unique within one file: (key name, how to read it from a record).
    unique: tuple[tuple[str, Callable[[Any], str | None]], ...]
    any_of: tuple[str, ...] = ()  # at least one of these columns in the header

    def column(self, key: str) -> Column:
        return next(c for c in self.columns if c.key == key)


@dataclass(frozen=True, slots=True)
class FileError:
    row: int  # 1 = the header
    field: str | None  # the English column name
    column: str | None  # the column as the file names it
    message: str  # Chinese

    def to_dict(self) -> dict[str, Any]:
        return {"row": self.row, "field": self.field, "column": self.column, "message": self.message}


@dataclass(slots=True)
class ParsedFile:
    items: list[ImportItem] = field(default_factory=list)
    errors: list[FileError] = field(default_factory=list)
    rows_read: int = 0  # data rows, blank ones excluded
    encoding: str | None = None
    columns: list[str] = field(default_factory=list)
    ignored_columns: list[str] = field(default_factory=list)
    header_failed: bool = False  # missing or duplicate columns: no row was read

    @property
    def failed_rows(self) -> int:
        if self.header_failed:
            return max(1, self.rows_read)
        return len({e.row for e in self.errors})


TRUE_WORDS = frozenset({"是", "启用", "在职", "有效", "y", "yes", "true", "1", "on", "√", "active"})
FALSE_WORDS = frozenset({"否", "停用", "禁用", "离职", "无效", "n", "no", "false", "0", "off", "×", "inactive"})
LIST_SEPARATORS = re.compile(r"[、,，;；|/\n]+")
ROLE_WORDS: dict[str, Role] = {
    "技师": Role.TECHNICIAN, "主管": Role.SUPERVISOR, "管理员": Role.ADMIN, "仓库": Role.WAREHOUSE,
    "仓库管理员": Role.WAREHOUSE, "质检": Role.QUALITY, "质量改进组": Role.QUALITY, "专家": Role.EXPERT,
    "前台": Role.FRONT_DESK, **{r.value: r for r in Role if r != Role.CUSTOMER},
}
_DATE_PATTERNS = (re.compile(r"(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})"), re.compile(r"(\d{4})年(\d{1,2})月(\d{1,2})日?"),
                  re.compile(r"(\d{4})(\d{2})(\d{2})"))


class RowReader:
    """One data row: typed reads of its cells that record what is wrong instead of raising."""

    def __init__(self, row: int, cells: dict[str, str], header: dict[str, str], kind: Kind) -> None:
        self.row = row
        self.cells = cells
        self.header = header
        self.kind = kind
        self.errors: list[FileError] = []

    def fail(self, key: str, message: str) -> None:
        self.errors.append(FileError(self.row, key, self.header.get(key, self.kind.column(key).label), message))

    def text(self, key: str) -> str:
        return self.cells.get(key, "")

    def optional(self, key: str) -> str | None:
        return self.cells.get(key) or None

    def required(self, key: str) -> str:
        value = self.text(key)
        if not value:
            self.fail(key, f"{self.kind.column(key).label}不能为空")
        return value

    def given(self, key: str) -> bool:
        return key in self.cells

    def flag(self, key: str, default: bool = True) -> bool:
        value = self.text(key).lower()
        if not value:
            return default
        if value in TRUE_WORDS:
            return True
        if value in FALSE_WORDS:
            return False
        self.fail(key, f"{self.kind.column(key).label}只能填 是/否：{self.text(key)}")
        return default

    def coordinates(self, required: bool = False) -> tuple[float | None, float | None]:
        lat = self._coordinate("lat")
        lng = self._coordinate("lng")
        lat_text, lng_text = self.text("lat"), self.text("lng")
        if required and not lat_text:
            self.fail("lat", "纬度不能为空")
        if required and not lng_text:
            self.fail("lng", "经度不能为空")
        if not required and bool(lat_text) != bool(lng_text):
            self.fail("lng" if lat_text else "lat", "经纬度必须同时填写或同时留空")
        return lat, lng

    def _coordinate(self, key: str) -> float | None:
        text = self.text(key)
        if not text:
            return None
        value, problem = parse_coordinate(text, key)
        if problem is not None:
            self.fail(key, problem)
        return value

    def day(self, key: str) -> date | None:
        text = self.text(key)
        if not text:
            return None
        for pattern in _DATE_PATTERNS:
            match = pattern.fullmatch(text.split("T")[0].split(" ")[0])
            if match:
                try:
                    return date(int(match[1]), int(match[2]), int(match[3]))
                except ValueError:
                    break
        self.fail(key, f"{self.kind.column(key).label}不是有效日期：{text}（示例：2026-12-31）")
        return None

    def items(self, key: str) -> list[str]:
        return [part.strip() for part in LIST_SEPARATORS.split(self.text(key)) if part.strip()]

    def identifier(self, key: str, normalise: Callable[[str], str | None], what: str) -> str | None:
        text = self.text(key)
        if not text:
            return None
        try:
            value = normalise(text)
        except ValueError as error:
            self.fail(key, f"{what}「{text}」：{error}")
            return None
        if value is None:
            self.fail(key, f"{what}「{text}」格式不正确")
        return value


# --- kinds ---------------------------------------------------------------------------------------

def _store(r: RowReader) -> StoreRecord | None:
    code, name = r.required("code"), r.required("name")
    lat, lng = r.coordinates(required=True)
    phone = r.text("phone")
    if phone and normalise_phone(phone) is None:
        r.fail("phone", f"电话号码格式不正确：{phone}")
    active = r.flag("active")
    if r.errors:
        return None
    return StoreRecord(code, name, address=r.text("address"), lat=lat, lng=lng,
                       opening_hours=r.text("opening_hours"), phone=phone, active=active)


def _team(r: RowReader) -> TeamRecord | None:
    code, name = r.required("code"), r.required("name")
    active = r.flag("active")
    if r.errors:
        return None
    return TeamRecord(code, name, store_code=r.optional("store"), leader_id=r.optional("leader"), active=active)


def _person(r: RowReader) -> PersonRecord | None:
    person_id, name = r.required("id"), r.required("name")
    role_text = r.required("role")
    role = ROLE_WORDS.get(role_text) or ROLE_WORDS.get(role_text.lower())
    if role_text and role is None:
        r.fail("role", f"角色「{role_text}」不认识（可填：技师、主管、管理员、仓库、质检、专家、前台）")
    phone = r.identifier("phone", normalise_phone, "电话")
    active = r.flag("active")
    identities = tuple((platform, value) for platform in ("wecom", "dingtalk", "feishu")
                       if (value := r.text(f"{platform}_id")))
    if r.errors or role is None:
        return None
    return PersonRecord(person_id, name, role, phone=phone, store_code=r.optional("store"),
                        team_code=r.optional("team"), supervisor_id=r.optional("supervisor"),
                        title=r.optional("title"), active=active, identities=identities)


def _customer(r: RowReader) -> CustomerRecord | None:
    customer_id, name = r.required("id"), r.required("name")
    phones: list[str] = []
    for text in r.items("phones"):
        phone = normalise_phone(text)
        if phone is None:
            r.fail("phones", f"电话号码格式不正确：{text}")
        elif phone not in phones:
            phones.append(phone)
    lat, lng = r.coordinates()
    address = r.text("address")
    if lat is not None and not address:
        r.fail("address", "填写了经纬度但没有地址")
    if r.errors:
        return None
    addresses = (Address("地址", address, lat, lng),) if address else ()
    return CustomerRecord(customer_id, name, phones=tuple(phones), addresses=addresses, company=r.text("company"),
                          service_level=r.text("service_level"), store_code=r.optional("store"))


def _params(r: RowReader) -> dict[str, Any]:
    text = r.text("params")
    if not text:
        return {}
    if text.startswith("{"):
        try:
            value = json.loads(text)
        except ValueError:
            value = None
        if not isinstance(value, dict):
            r.fail("params", "技术参数的 JSON 格式不正确")
            return {}
        return value
    params: dict[str, Any] = {}
    for part in re.split(r"[;；\n]+", text):
        if not part.strip():
            continue
        key, sep, value = part.partition("=") if "=" in part else re.split(r"([:：])", part, maxsplit=1) \
            if re.search(r"[:：]", part) else (part, "", "")
        if not sep or not key.strip():
            r.fail("params", f"技术参数应写成「名称=值；名称=值」：{part.strip()}")
            continue
        params[key.strip()] = _number_or_text(value.strip())
    return params


def _number_or_text(text: str) -> Any:
    try:
        number = float(text)
    except ValueError:
        return text
    return int(number) if number.is_integer() and "." not in text else number


def _asset(r: RowReader) -> AssetRecord | None:
    sn = r.identifier("sn", normalise_sn, "序列号")
    vin = r.identifier("vin", normalise_vin, "VIN")
    plate = r.identifier("plate", normalise_plate, "车牌")
    asset_id = r.text("id")
    if not (asset_id or r.text("sn") or r.text("vin") or r.text("plate")):
        r.fail("id", "资产编号、序列号、VIN、车牌至少填写一项")
    installed, purchased, warranty = r.day("installed_on"), r.day("purchased_on"), r.day("warranty_end")
    params = _params(r)
    if r.errors:
        return None
    display = r.text("sn") or r.text("plate") or r.text("vin") or asset_id
    return AssetRecord(asset_id, sn=sn, vin=vin, plate=plate, brand=r.text("brand"), model=r.text("model"),
                       store_code=r.optional("store"), customer_id=r.optional("customer"), installed_on=installed,
                       purchased_on=purchased, warranty_end=warranty, params=params, display_id=display)


def _contract(r: RowReader) -> ContractRecord | None:
    number, customer = r.required("number"), r.required("customer")
    valid_from, valid_to = r.day("valid_from"), r.day("valid_to")
    if not r.text("valid_from"):
        r.fail("valid_from", "生效日期不能为空")
    if not r.text("valid_to"):
        r.fail("valid_to", "到期日期不能为空")
    if valid_from and valid_to and valid_to < valid_from:
        r.fail("valid_to", f"到期日期 {valid_to} 早于生效日期 {valid_from}")
    if r.errors or valid_from is None or valid_to is None:
        return None
    return ContractRecord(number, customer, tuple(dict.fromkeys(r.items("assets"))), r.text("level"), valid_from,
                          valid_to)


def _attr(name: str) -> Callable[[Any], str | None]:
    return lambda record: getattr(record, name) or None


def _platform_id(platform: str) -> Callable[[Any], str | None]:
    return lambda record: dict(record.identities).get(platform)


STORE_COLUMNS = (
    Column("code", "门店编号", ("门店代码", "门店", "store", "store_code", "id"), "S01"),
    Column("name", "门店名称", ("名称",), "浦东张江店"),
    Column("address", "地址", ("门店地址",), "上海市浦东新区张江路1号"),
    Column("lat", "纬度", ("latitude",), "31.2035"),
    Column("lng", "经度", ("lon", "longitude"), "121.5903"),
    Column("opening_hours", "营业时间", ("hours",), "周一至周日 9:00-18:00"),
    Column("phone", "电话", ("门店电话", "联系电话"), "021-50801234"),
    Column("active", "启用", ("状态", "enabled"), "是"),
)
TEAM_COLUMNS = (
    Column("code", "班组编号", ("班组代码", "team", "id"), "T01"),
    Column("name", "班组名称", ("名称",), "电工一班"),
    Column("store", "门店", ("门店编号", "store_code"), "S01"),
    Column("leader", "班组长", ("组长", "leader_id"), "sup-li"),
    Column("active", "启用", ("状态", "enabled"), "是"),
)
PEOPLE_COLUMNS = (
    Column("id", "工号", ("员工编号", "编号", "person_id"), "P001"),
    Column("name", "姓名", (), "李主管"),
    Column("role", "角色", ("岗位",), "主管"),
    Column("phone", "电话", ("手机", "手机号", "mobile"), "13800000001"),
    Column("store", "门店", ("门店编号", "store_code"), "S01"),
    # Blank in the example: the templates import one after another (stores, people, customers,
    # assets, contracts) without a teams file.
    Column("team", "班组", ("班组编号", "team_code"), ""),
    Column("supervisor", "直属主管", ("主管", "supervisor_id"), ""),
    Column("title", "职务", ("职位",), "电工班长"),
    Column("wecom_id", "企业微信", ("企业微信id", "wecom"), "lizhuguan"),
    Column("dingtalk_id", "钉钉", ("钉钉id", "dingtalk"), ""),
    Column("feishu_id", "飞书", ("飞书id", "feishu"), ""),
    Column("active", "在职", ("启用", "状态", "enabled"), "是"),
)
CUSTOMER_COLUMNS = (
    Column("id", "客户编号", ("客户id", "customer_id", "编号"), "C0001"),
    Column("name", "客户名称", ("姓名", "名称", "客户姓名"), "王先生"),
    Column("phones", "电话", ("手机", "手机号", "联系电话", "phone", "mobile"), "13812345678、021-64581234"),
    Column("address", "地址", ("客户地址",), "上海市浦东新区碧云路2号"),
    Column("lat", "纬度", ("latitude",), "31.2330"),
    Column("lng", "经度", ("lon", "longitude"), "121.5900"),
    Column("company", "公司", ("单位", "company_name"), "碧云物业"),
    Column("service_level", "服务等级", ("客户等级", "level"), "金卡"),
    Column("store", "门店", ("服务门店", "门店编号", "store_code"), "S01"),
)
ASSET_COLUMNS = (
    Column("id", "资产编号", ("asset_id", "资产id"), "AC-0001"),
    Column("sn", "序列号", ("sn码", "设备编号", "设备序列号", "出厂编号", "serial", "serial_number"), "KFR-35GW/N8HR3"),
    Column("vin", "VIN", ("车架号", "车辆识别代号"), ""),
    Column("plate", "车牌", ("车牌号", "plate_number"), ""),
    Column("brand", "品牌", (), "格力"),
    Column("model", "型号", ("规格型号",), "KFR-35GW"),
    Column("store", "门店", ("门店编号", "store_code"), "S01"),
    Column("customer", "客户编号", ("客户", "customer_id", "owner"), "C0001"),
    Column("installed_on", "安装日期", ("installed",), "2024-05-01"),
    Column("purchased_on", "购买日期", ("purchased",), "2024-04-20"),
    Column("warranty_end", "保修截止", ("保修到期", "保修截止日期", "warranty"), "2027-04-30"),
    Column("params", "技术参数", ("参数", "parameters"), "匹数=1.5；冷媒=R32"),
)
CONTRACT_COLUMNS = (
    Column("number", "合同编号", ("合同号", "contract", "contract_number"), "HT-2026-001"),
    Column("customer", "客户编号", ("客户", "customer_id"), "C0001"),
    Column("assets", "设备", ("覆盖设备", "资产编号", "asset_ids"), "AC-0001"),
    Column("level", "服务等级", ("合同等级", "service_level"), "金牌"),
    Column("valid_from", "生效日期", ("开始日期", "from", "start"), "2026-01-01"),
    Column("valid_to", "到期日期", ("结束日期", "to", "end"), "2026-12-31"),
)

KINDS: dict[str, Kind] = {
    "stores": Kind("stores", STORE_COLUMNS, ("code", "name", "lat", "lng"), _store, (("code", _attr("code")),)),
    "teams": Kind("teams", TEAM_COLUMNS, ("code", "name"), _team, (("code", _attr("code")),)),
    "people": Kind("people", PEOPLE_COLUMNS, ("id", "name", "role"), _person, (
        ("id", _attr("id")),
        *((f"{p}_id", _platform_id(p)) for p in ("wecom", "dingtalk", "feishu")),
    )),
    "customers": Kind("customers", CUSTOMER_COLUMNS, ("id", "name"), _customer, (("id", _attr("id")),)),
    "assets": Kind("assets", ASSET_COLUMNS, (), _asset, (
        ("id", _attr("id")), ("sn", _attr("sn")), ("vin", _attr("vin")), ("plate", _attr("plate"))),
        any_of=("id", "sn", "vin", "plate")),
    "contracts": Kind("contracts", CONTRACT_COLUMNS, ("number", "customer", "valid_from", "valid_to"), _contract,
                      (("number", _attr("number")),)),
}


def template(kind: str) -> str:
    """The CSV header (Chinese names) and one example row."""
    columns = KINDS[kind].columns
    return ",".join(c.label for c in columns) + "\n" + ",".join(_csv_cell(c.example) for c in columns) + "\n"


def _csv_cell(text: str) -> str:
    return f'"{text}"' if any(ch in text for ch in ',"\n') else text


def parse_file(kind: str, path: str | Path) -> ParsedFile:
    table = read_table(path)
    parsed = parse_rows(kind, table.rows)
    parsed.encoding = table.encoding
    return parsed


def parse_rows(kind_name: str, rows: list[list[Any]]) -> ParsedFile:
    kind = KINDS[kind_name]
    parsed = ParsedFile()
    if not rows:
        parsed.errors.append(FileError(1, None, None, "文件为空，缺少表头"))
        parsed.header_failed = True
        return parsed
    columns = _map_header(kind, rows[0], parsed)
    data = [r for r in rows[1:] if any(header_text(c) for c in r)]
    parsed.rows_read = len(data)
    if parsed.errors:
        parsed.header_failed = True
        return parsed
    parsed.columns = sorted(columns, key=columns.__getitem__)
    header = {key: header_text(rows[0][i]) for key, i in columns.items()}
    first_row: dict[tuple[str, str], int] = {}
    for offset, raw in enumerate(rows[1:], start=2):
        cells = cells_of(raw, columns)
        if not any(cells.values()):
            continue  # blank line (Excel leaves many)
        reader = RowReader(offset, cells, header, kind)
        record = kind.parse(reader)
        if record is not None:
            for key, read in kind.unique:
                value = read(record)
                if value is None:
                    continue
                if (key, value) in first_row:
                    label = kind.column(key).label
                    reader.fail(key, f"{label}「{value}」在文件中重复（第 {first_row[key, value]} 行已有）")
            if not reader.errors:
                for key, read in kind.unique:
                    if (value := read(record)) is not None:
                        first_row[key, value] = offset
                parsed.items.append(ImportItem(offset, record))
        parsed.errors.extend(reader.errors)
    return parsed


def _map_header(kind: Kind, header: list[Any], parsed: ParsedFile) -> dict[str, int]:
    aliases = {name.lower(): column.key for column in kind.columns for name in column.names()}
    found = map_header(header, aliases, {c.key: c.label for c in kind.columns})
    columns = found.columns
    parsed.ignored_columns.extend(found.ignored)
    parsed.errors.extend(FileError(1, key, text, message) for key, text, message in found.duplicates)
    missing = [k for k in kind.required if k not in columns]
    if missing:
        names = "、".join(f"{kind.column(k).label}（{k}）" for k in missing)
        parsed.errors.append(FileError(1, ",".join(missing), None, f"缺少必需的列：{names}"))
    if kind.any_of and not any(k in columns for k in kind.any_of):
        names = "、".join(f"{kind.column(k).label}（{k}）" for k in kind.any_of)
        parsed.errors.append(FileError(1, ",".join(kind.any_of), None, f"至少需要以下一列：{names}"))
    return columns


