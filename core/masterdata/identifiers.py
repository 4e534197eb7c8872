"""One normalisation of asset and contact identifiers, used by import, lookup, intake and reports.

Pure functions. Everything starts with NFKC, which turns full-width characters (ＫＦＲ－３５, as
Chinese input methods type them) into their ASCII forms; then upper case.

- SN: separators `-/_ .` and all whitespace are dropped: `KFR-35GW/N8HR3` == `kfr35gw-n8hr3`.
- Plate: province character + issuing-authority letter + 5 alphanumerics (6 for new-energy
  plates), or 4 + one of 挂学警港澳 (e.g. 粤B1234学); spaces, middle dots and hyphens dropped.
- VIN: 17 characters, no I/O/Q, and the ISO 3779 check digit at position 9. Chinese VINs carry
  it (GB 16735 makes it mandatory), so a wrong one is a typo and is refused.
- Phone: digits only; +86 / 0086 / 86 before a mobile number is dropped; an 11-digit number
  starting with 1 is a mobile number, otherwise 7–12 digits are a landline (area code kept).
"""

from __future__ import annotations

import re
import unicodedata

SN_MAX_LENGTH = 64
PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼使领"
PLATE_SUFFIXES = "挂学警港澳"
_PLATE_ALNUM = "A-HJ-NP-Z0-9"  # plates use neither I nor O
_PLATE = re.compile(
    rf"[{PROVINCES}][A-HJ-NP-Z](?:[{_PLATE_ALNUM}]{{5,6}}|[{_PLATE_ALNUM}]{{4}}[{PLATE_SUFFIXES}])")
_SN_SEPARATORS = re.compile(r"[\s\-/_.]+")
_PLATE_SEPARATORS = re.compile(r"[\s\-·・•.]+")
_VIN_CHARS = re.compile(r"[A-HJ-NPR-Z0-9]{17}")
_VIN_VALUES = {**{str(d): d for d in range(10)},
               **dict(zip("ABCDEFGH", range(1, 9), strict=True)),
               **dict(zip("JKLMN", range(1, 6), strict=True)), "P": 7, "R": 9,
               **dict(zip("STUVWXYZ", range(2, 10), strict=True))}
_VIN_WEIGHTS = (8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2)
_MOBILE = re.compile(r"1[3-9]\d{9}")
_EXTENSION = re.compile(r"(?:转|分机|ext\.?|x|#).*$", re.IGNORECASE)


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text).upper()


def normalise_sn(text: str) -> str:
    """The comparable form of a serial number; ValueError when nothing is left or it is too long."""
    key = _SN_SEPARATORS.sub("", _fold(text))
    if not key:
        raise ValueError("设备编号为空")
    if len(key) > SN_MAX_LENGTH:
        raise ValueError(f"设备编号过长（最多 {SN_MAX_LENGTH} 个字符）")
    return key


def normalise_plate(text: str) -> str | None:
    """`沪A·12345` → `沪A12345`; None when it is no Chinese plate."""
    key = _PLATE_SEPARATORS.sub("", _fold(text))
    return key if _PLATE.fullmatch(key) else None


def vin_check_digit(vin: str) -> str:
    """The ISO 3779 check character of a 17-character VIN (position 9 is ignored)."""
    total = sum(_VIN_VALUES[c] * w for c, w in zip(vin, _VIN_WEIGHTS, strict=True))
    remainder = total % 11
    return "X" if remainder == 10 else str(remainder)


def normalise_vin(text: str) -> str:
    """The VIN in upper case; ValueError (a Chinese message) when it cannot be one."""
    key = _SN_SEPARATORS.sub("", _fold(text))
    if len(key) != 17:
        raise ValueError(f"VIN 应为 17 位（现为 {len(key)} 位）")
    if any(c in "IOQ" for c in key):
        raise ValueError("VIN 不能包含字母 I、O、Q")
    if not _VIN_CHARS.fullmatch(key):
        raise ValueError("VIN 只能包含字母和数字")
    expected = vin_check_digit(key)
    if key[8] != expected:
        raise ValueError(f"VIN 校验位不正确（第 9 位应为 {expected}）")
    return key


def is_vin(text: str) -> bool:
    try:
        normalise_vin(text)
    except ValueError:
        return False
    return True


def normalise_phone(text: str) -> str | None:
    """Digits of a mobile (11, starting with 1) or landline (7–12 digits) number; None otherwise."""
    folded = _EXTENSION.sub("", unicodedata.normalize("NFKC", text).strip())
    digits = re.sub(r"\D", "", folded)
    for prefix in ("0086", "86"):
        if digits.startswith(prefix) and _MOBILE.fullmatch(digits[len(prefix):]):
            return digits[len(prefix):]
    if len(digits) == 11 and digits.startswith("1"):
        return digits if _MOBILE.fullmatch(digits) else None
    if 7 <= len(digits) <= 12 and not digits.startswith("1"):
        return digits
    return None


def mask_phone(text: str | None) -> str:
    """`13812345678` → `138****5678`; a landline keeps its first 3 and last 4 digits too."""
    if not text:
        return ""
    digits = normalise_phone(text) or re.sub(r"\D", "", text)
    if len(digits) >= 8:
        return f"{digits[:3]}****{digits[-4:]}"
    return "****" + digits[-2:] if len(digits) > 2 else "****"


# An ASCII run (after NFKC) of letters and digits, possibly joined by SN separators.
_TOKEN = re.compile(r"(?<![A-Z0-9])[A-Z0-9]+(?:[\-/_.][A-Z0-9]+)*(?![A-Z0-9])")
_PLATE_IN_TEXT = re.compile(
    rf"[{PROVINCES}][\s·・]?[A-HJ-NP-Z][\s·・\-]?"
    rf"(?:[{_PLATE_ALNUM}]{{5,6}}|[{_PLATE_ALNUM}]{{4}}[{PLATE_SUFFIXES}])(?![A-Z0-9])")
SN_MIN_LENGTH = 6


def find_identifiers(text: str) -> list[tuple[str, str]]:
    """("plate" | "vin" | "sn", normalised) found in free text, in order of appearance, each once.

    A plate is a province character and what follows it; a VIN is a 17-character run with a valid
    check digit; an SN is any other run of at least 6 characters (separators not counted) mixing
    letters and digits (`KFR-35GW/N8HR3`). Pure numbers (phones, dates) and words are not SNs."""
    folded = _fold(text)  # spans below are positions in `folded`, which is all that is read
    found: list[tuple[int, str, str]] = []
    taken: list[tuple[int, int]] = []
    for match in _PLATE_IN_TEXT.finditer(folded):
        plate = normalise_plate(match.group())
        if plate is not None:
            found.append((match.start(), "plate", plate))
            taken.append(match.span())
    for match in _TOKEN.finditer(folded):
        start, end = match.span()
        if any(start < t_end and t_start < end for t_start, t_end in taken):
            continue
        token = match.group()
        if len(token) == 17 and is_vin(token):
            found.append((start, "vin", token))
            continue
        key = _SN_SEPARATORS.sub("", token)
        if len(key) >= SN_MIN_LENGTH and len(key) <= SN_MAX_LENGTH and re.search(r"[A-Z]", key) \
                and re.search(r"\d", key):
            found.append((start, "sn", key))
    seen: set[tuple[str, str]] = set()
    out: list[tuple[str, str]] = []
    for _, kind, key in sorted(found):
        if (kind, key) not in seen:
            seen.add((kind, key))
            out.append((kind, key))
    return out
