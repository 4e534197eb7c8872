"""User text in platform markup, escaped in one place: one function per platform dialect.

Card text (titles, facts, bodies, closing notes, field labels and options) carries what customers
and staff typed. Wherever a renderer puts such text into a markup field it goes through the
function of that platform's dialect here, so that `[点此](dtmd://…)`, `![](http://x/p.png)`,
`<a href=…>`, `<at id=all>`, `**`, `# `, `> ` or `:OK:` show exactly as typed, and no link, image,
mention, emoji or formatting comes from user text. Fields a platform shows as plain text (Feishu
`plain_text`, DingTalk button titles, WeCom template cards) need no markdown escaping and get none.

- Feishu card JSON 2.0 `markdown` and DingTalk robot markdown (sampleMarkdown, sampleActionCard
  text) are CommonMark-like with inline HTML (`<font>`, Feishu's `<at>`, `<link>`). A character that
  can start markup becomes a numeric character reference (`[` → `&#91;`): in CommonMark a reference
  is always literal text, never markup, and the HTML layer of both renderers shows it as the
  character (Feishu documents these references for special characters in card markdown). Inline
  syntax characters are replaced everywhere (`&` first, so text typed as `&lt;` still shows `&lt;`);
  block syntax only where it takes effect, at the start of a line (`#`, `-`, `+`, `=`, `1.`), so
  ticket numbers, times and "3#机" stay as they are in the markdown source. Autolinks are broken
  the same way (the `:` of `://`, the `.` of `www.`, every `@`), and so is Feishu's `:EMOJI:`.
- WeCom template cards are plain text, but a message sent with `enable_id_trans` (urgent cards call
  the recipient by name) turns `$userName=ID$` anywhere in it into a name. A zero-width space after
  the `$` keeps the text as it looks and stops the translation.
"""

from __future__ import annotations

import re

# Inline markup (links, images, HTML, emphasis, code, strikethrough, tables, escapes, e-mail autolinks).
_INLINE = str.maketrans({c: f"&#{ord(c)};" for c in "&\\`*_~[]<>|@"})
# Block markup at the start of a line: headings, lists, setext underlines; "1." and "1)" lists.
_LINE_START = re.compile(r"(?m)^([ \t]*)([#+=-])")
_ORDERED = re.compile(r"(?m)^([ \t]*[0-9]+)([.)])")
_URL = re.compile(r"://")
_WWW = re.compile(r"(?i)\b(www)\.")
_EMOJI = re.compile(r":(?=[A-Za-z0-9_+-]+:)")
_WECOM_ID_TRANS = re.compile(r"\$(?=(?:userName|departmentName)=)", re.IGNORECASE)
ZERO_WIDTH_SPACE = "\u200b"


def _reference(match: re.Match[str]) -> str:
    return f"{match.group(1)}&#{ord(match.group(2))};"


def _commonmark_html(text: str) -> str:
    text = text.translate(_INLINE)  # first: it escapes "&", and the lines below add references
    text = _LINE_START.sub(_reference, text)
    text = _ORDERED.sub(_reference, text)
    text = _URL.sub("&#58;//", text)
    text = _WWW.sub(r"\1&#46;", text)
    return _EMOJI.sub("&#58;", text)


def feishu(text: str) -> str:
    """For Feishu card JSON 2.0 `markdown` elements."""
    return _commonmark_html(text)


def dingtalk(text: str) -> str:
    """For DingTalk robot markdown (sampleMarkdown, sampleActionCard*) and the template `markdown` param."""
    return _commonmark_html(text)


def wecom(text: str) -> str:
    """For WeCom template card text (plain, but read for `$userName=…$` when id translation is on)."""
    return _WECOM_ID_TRANS.sub("$" + ZERO_WIDTH_SPACE, text)
