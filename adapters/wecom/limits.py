"""WeCom size limits and truncation that never cuts a character in half."""

from __future__ import annotations

ELLIPSIS = "…"

MARKDOWN_MAX_BYTES = 2048
TEXT_MAX_BYTES = 2048
TASK_ID_MAX_BYTES = 128
BUTTON_LIST_MAX = 6
SELECT_LIST_MAX = 3
SELECT_OPTIONS_MAX = 10
HORIZONTAL_CONTENT_MAX = 6

# Recommended display lengths (characters) from the template_card docs; longer text is cut
# by the client anyway, so we cut first and keep the ellipsis visible.
MAIN_TITLE_CHARS = 36
MAIN_DESC_CHARS = 44
EMPHASIS_TITLE_CHARS = 14
EMPHASIS_DESC_CHARS = 22
SUB_TITLE_CHARS = 160
KEYNAME_CHARS = 10
VALUE_CHARS = 30
BUTTON_TEXT_CHARS = 10
OPTION_TEXT_CHARS = 16
SELECT_TITLE_CHARS = 16
REPLACE_NAME_CHARS = 20


def cut_chars(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[: max(limit - 1, 0)] + ELLIPSIS


def cut_utf8(text: str, limit_bytes: int) -> str:
    """Cut `text` to at most `limit_bytes` UTF-8 bytes on a character boundary, with an ellipsis."""
    raw = text.encode("utf-8")
    if len(raw) <= limit_bytes:
        return text
    budget = limit_bytes - len(ELLIPSIS.encode("utf-8"))
    # errors="ignore" drops the partial multi-byte character at the cut.
    return raw[: max(budget, 0)].decode("utf-8", errors="ignore") + ELLIPSIS
