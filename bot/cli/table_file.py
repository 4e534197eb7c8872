"""Reading an import file (CSV or .xlsx) into rows of cells: the one reader every import kind uses
(technician_file.py, masterdata_files.py). No database access, no meaning given to columns.

CSV: UTF-8 with or without BOM, UTF-16 (Excel's "Unicode text"), else GBK/GB18030 (what Chinese
Excel writes for "CSV"); comma or tab separated. Excel: the first sheet of an .xlsx; an old .xls
is refused with a hint.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from core.errors import InvalidInput


class TableFileError(InvalidInput):
    """The file as a whole cannot be read (format, encoding). Row problems are reported per row instead."""


@dataclass(slots=True)
class Table:
    rows: list[list[Any]]  # the header first, cells as read (str from CSV; str/int/float/date... from Excel)
    encoding: str | None  # CSV only


def read_table(path: str | Path) -> Table:
    """Chosen by content, not by the file name."""
    data = Path(path).read_bytes()
    if data.startswith(b"PK\x03\x04"):
        return Table(read_xlsx(data), None)
    if data.startswith(b"\xd0\xcf\x11\xe0"):
        raise TableFileError("不支持旧版 .xls 文件，请在 Excel 中另存为 .xlsx 或 CSV", path=str(path))
    return read_csv(data)


def read_csv(data: bytes) -> Table:
    text, encoding = decode(data)
    first_line = text.split("\n", 1)[0]
    delimiter = "\t" if "\t" in first_line and "," not in first_line else ","
    return Table([list(row) for row in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)], encoding)


def read_xlsx(data: bytes) -> list[list[Any]]:
    import openpyxl  # lazy: only the import commands need it

    try:
        workbook = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many unrelated types for a broken file
        raise TableFileError(f"无法读取 Excel 文件：{exc}") from exc
    try:
        sheet = workbook.worksheets[0]
        return [list(row) for row in sheet.iter_rows(values_only=True)]
    finally:
        workbook.close()


def decode(data: bytes) -> tuple[str, str]:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16"), "utf-16"
    try:
        return data.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        # GB18030 is a superset of GBK/GB2312.
        return data.decode("gb18030"), "gbk"
    except UnicodeDecodeError as exc:
        raise TableFileError("无法识别文件编码，请保存为 UTF-8 或 GBK 编码的 CSV") from exc


def header_text(title: Any) -> str:
    return "" if title is None else str(title).strip().lstrip("\ufeff")


def cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "是" if value else "否"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # Excel stores 工号 1001 and phone numbers as 1001.0
    if isinstance(value, datetime):
        # A date typed in Excel arrives as midnight: it is a date.
        return value.date().isoformat() if value.time() == datetime.min.time() else value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return str(value).strip()


@dataclass(slots=True)
class Header:
    columns: dict[str, int]  # field -> position
    ignored: list[str]  # headers no field is known by
    duplicates: list[tuple[str, str, str]]  # (field, header as written, Chinese message)


def map_header(header: Sequence[Any], aliases: dict[str, str], labels: dict[str, str]) -> Header:
    """Which column holds which field. `aliases`: lower-case header → field; `labels`: field → its
    Chinese name, for the message about a field given twice."""
    found = Header({}, [], [])
    for i, title in enumerate(header):
        text = header_text(title)
        if not text:
            continue
        key = aliases.get(text.lower())
        if key is None:
            found.ignored.append(text)
        elif key in found.columns:
            found.duplicates.append((key, text, f"列重复：“{text}”与第 {found.columns[key] + 1} 列都是{labels[key]}"))
        else:
            found.columns[key] = i
    return found


def parse_coordinate(text: str, key: str) -> tuple[float | None, str | None]:
    """(value, None), or (None, a Chinese message); `key` is "lat" or "lng"."""
    label, limit = ("纬度", 90.0) if key == "lat" else ("经度", 180.0)
    try:
        value = float(text)
    except ValueError:
        return None, f"{label}不是数字：{text}"
    if not math.isfinite(value) or abs(value) > limit:
        hint = "（疑似经纬度填反）" if key == "lat" and math.isfinite(value) and abs(value) <= 180.0 else ""
        return None, f"{label}超出范围（±{limit:g}）：{text}{hint}"
    return value, None


def cells_of(row: Sequence[Any], columns: dict[str, int]) -> dict[str, str]:
    return {key: cell_text(row[i]) if i < len(row) else "" for key, i in columns.items()}
