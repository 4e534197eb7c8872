"""Reading what arrives from a platform before anything trusts it: bounded JSON and integer times.

Every adapter parses untrusted bytes (a request body before its signature is known to be right,
a JSON string inside an event, a stream frame). The standard library's parser recurses once per
nesting level (`[` x 100000 raises RecursionError), turns `1e400` into inf, accepts `NaN` and
builds integers of thousands of digits that overflow the moment they meet a float. So:

- `loads_bounded` refuses nesting deeper than `MAX_JSON_DEPTH` (counted on the text with the
  strings taken out, at C speed), integers over `MAX_INT_DIGITS` digits, floats that
  are not finite or are absurdly long, and the NaN/Infinity literals. Every refusal is one
  `UnsafePayload` (a ValueError): the caller answers 4xx, never 500.
- `parse_int_text` / `unix_seconds` read times and counters as integers only: ASCII digits, a
  bounded count of them (no "nan", "1e9", "+1", " 1", "1_000", "١٢٣"), so a freshness check
  compares integers and cannot be passed or crashed by a float.
"""

from __future__ import annotations

import json
import math
import re
from itertools import accumulate
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import aiohttp

MAX_JSON_DEPTH = 32  # the deepest platform payload we read is under 10 levels
MAX_INT_DIGITS = 20  # 2**64 has 20 digits: every id or time a platform sends fits
MAX_FLOAT_CHARS = 40
UNIX_SECONDS_DIGITS = 10  # until the year 2286
UNIX_MILLIS_DIGITS = 13

# A JSON string, unrolled so that matching is linear: "...(\\. ...)*"
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_BRACKETS = re.compile(r"[\[\]{}]")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}
_DIGITS = {n: re.compile(rf"[0-9]{{1,{n}}}") for n in (UNIX_SECONDS_DIGITS, UNIX_MILLIS_DIGITS, MAX_INT_DIGITS)}


class UnsafePayload(ValueError):
    """Not JSON, or JSON beyond the bounds above."""


def loads_bounded(raw: bytes | str, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes | bytearray) else raw
    except UnicodeDecodeError as exc:
        raise UnsafePayload("not UTF-8") from exc
    try:
        # The C parser guards its own recursion (RecursionError near depth 1000, no crash), so it
        # runs first; the depth is then measured on text known to be valid JSON, where every
        # string is closed and the measuring regex stays linear.
        value = json.loads(text, parse_int=_int, parse_float=_float, parse_constant=_constant)
    except UnsafePayload:
        raise
    except RecursionError as exc:
        raise UnsafePayload(f"JSON nested deeper than {max_depth} levels") from exc
    except ValueError as exc:  # JSONDecodeError is a ValueError
        raise UnsafePayload(f"not JSON: {exc}") from exc
    # No deeper than its opening brackets, strings' included: most payloads have fewer than the bound,
    # counted at C speed, and skip the measure (a Python step per bracket, the dearer part of a read).
    if text.count("{") + text.count("[") > max_depth and json_depth(text) > max_depth:
        raise UnsafePayload(f"JSON nested deeper than {max_depth} levels")
    return value


def json_depth(text: str) -> int:
    """The deepest nesting of brackets outside strings, for valid JSON (an unclosed string can
    make the string regex scan the rest of the text once per quote)."""
    structure = _STRING.sub("", text)
    brackets = _BRACKETS.findall(structure)
    if len(brackets) <= 1:
        return len(brackets)
    return max(accumulate(_STEP[b] for b in brackets))


def parse_int_text(value: object, *, max_digits: int = MAX_INT_DIGITS) -> int:
    """A non-negative integer given as ASCII digits (a str) or as a JSON integer (not a bool)."""
    if isinstance(value, int) and not isinstance(value, bool):
        if 0 <= value < 10**max_digits:
            return value
        raise ValueError(f"integer out of range: {value!r:.40}")
    pattern = _DIGITS.get(max_digits) or re.compile(rf"[0-9]{{1,{max_digits}}}")
    if isinstance(value, str) and pattern.fullmatch(value):
        return int(value)
    raise ValueError(f"not an integer of at most {max_digits} digits: {value!r:.40}")


def unix_seconds(value: object) -> int:
    return parse_int_text(value, max_digits=UNIX_SECONDS_DIGITS)


def unix_millis(value: object) -> int:
    return parse_int_text(value, max_digits=UNIX_MILLIS_DIGITS)


def _int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise UnsafePayload(f"integer of {len(text)} digits")
    return int(text)


def _float(text: str) -> float:
    if len(text) > MAX_FLOAT_CHARS:
        raise UnsafePayload(f"number of {len(text)} characters")
    value = float(text)
    if not math.isfinite(value):
        raise UnsafePayload(f"number out of range: {text}")
    return value


def _constant(name: str) -> Any:
    raise UnsafePayload(f"{name} is not JSON")


def api_session(timeout_s: float) -> aiohttp.ClientSession:
    """An aiohttp client session for a platform's server API. Those APIs authenticate by token and
    set no cookie we need, so the session has no cookie jar: aiohttp's default one filters its
    cookies for every request and stores every answer's, once per message sent."""
    import aiohttp  # here: the parsers above are also used by code that makes no HTTP call

    return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s),
                                 cookie_jar=aiohttp.DummyCookieJar())


JSON_HEADERS = {"Content-Type": "application/json"}


def json_body(value: Any) -> bytes:
    """The bytes aiohttp's `json=` sends (json.dumps, UTF-8), without its payload object per call."""
    return json.dumps(value).encode("utf-8")
