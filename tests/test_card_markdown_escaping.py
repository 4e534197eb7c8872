"""Hostile user text on the cards of all three platforms: shown as typed, never a link, image or markup.

Each card is rendered twice: once with hostile text in every user-visible slot (title, facts, body,
closing note, field labels, placeholders, options, button labels, the text sent above the card) and
once with harmless placeholders in the same slots. The placeholder rendering is the template: the
hostile rendering must be that same template with each placeholder replaced by a piece that

- in a markdown field, contains no raw markup (no `[`, `]`, `<`, `>`, `*`, `_`, backquote, `~`, `|`,
  backslash, `@`, `&` outside character references, no `://`, `www.`, `:EMOJI:`, and no line that
  starts a heading, quote or list) and reads back, references decoded, as exactly the hostile text;
- in a plain-text field, is exactly the hostile text.

So the test does not restate the escape table; it checks what a reader of the card would get.
"""

from __future__ import annotations

import html
import json
import re
from typing import Any
from urllib.parse import unquote

import pytest

from adapters.dingtalk import cards as dingtalk_cards
from adapters.dingtalk.commands import parse_command
from adapters.feishu import cards as feishu_cards
from adapters.markdown import ZERO_WIDTH_SPACE
from adapters.wecom import cards as wecom_cards
from core.cards import ActionStyle, Card, CardAction, CardField, CardKind, FieldKind, FieldOption

HOSTILE = [
    "[点此](dtmd://dingtalkclient/sendMessage?content=技师 停用 tech-wang)",
    "![](http://x/p.png)",
    "<a href='http://evil.example'>点我</a><img src=http://x/p.png>",
    "<at id=all></at><font color=red>红</font>",
    "**粗** _斜_ `代码` ~~删~~ *星*",
    "# 标题",
    "> 引用\n- 列表\n1. 有序\n+ 加号\n===",
    "访问 http://evil.example/x 或 www.evil.example",
    "联系 me@evil.example :OK: :DONE:",
    "&lt;b&gt; &#91;x&#93; &amp;",
    "[x]: http://evil.example\n[引用][x]",
    "\\[反斜杠\\] | a | b |\n|---|---|",
    "$userName=tech-wang$ 请处理",
    "3#注塑机 12:30 GD-20261206-0001",
]

_REFERENCE = re.compile(r"&#[0-9]+;")
_RAW_MARKUP = re.compile(r"[\[\]<>*_`~|\\@&]|://|(?i:www\.)|:[A-Za-z0-9_+-]+:")
_BLOCK_START = re.compile(r"(?m)^[ \t]*(?:[#>+=-]|[0-9]+[.)])")


def _card(texts: list[str], *, closed: bool = False, options: int = 2) -> Card:
    t = iter(texts)
    return Card(
        id="card-1",
        kind=CardKind.SIGNOFF,
        title=next(t),
        ticket_number="GD-20261206-0001",
        facts=((next(t), next(t)), (next(t), next(t))),
        body=next(t),
        actions=(CardAction("confirm", next(t), ActionStyle.PRIMARY), CardAction("reject", next(t))),
        fields=(
            CardField("told", next(t), FieldKind.CHECKBOX, required=True),
            CardField("rating", next(t), FieldKind.SELECT,
                      tuple(FieldOption(str(i), next(t)) for i in range(options)), required=True),
            CardField("note", next(t), FieldKind.TEXT, placeholder=next(t)),
        ),
        closed_note=next(t) if closed else None,
    )


SLOTS = 13 + 7  # texts a card above takes with up to 7 options


def _pair(*, closed: bool = False, options: int = 2, shift: int = 0) -> tuple[Card, Card, dict[str, str]]:
    """(hostile card, placeholder card, placeholder -> hostile text)."""
    hostile = [HOSTILE[(i + shift) % len(HOSTILE)] + f" {i}" for i in range(SLOTS)]
    placeholders = [f"QZX{i}QZX" for i in range(SLOTS)]
    mapping = dict(zip(placeholders, hostile, strict=True))
    return (_card(hostile, closed=closed, options=options), _card(placeholders, closed=closed, options=options),
            mapping)


def _pieces(template: str, actual: str, mapping: dict[str, str]) -> list[tuple[str, str]]:
    """Match `actual` against `template` with every placeholder as a wildcard: [(placeholder, piece)]."""
    names = re.findall(r"QZX[0-9]+QZX", template)
    if not names:
        assert actual == template
        return []
    seen: set[str] = set()
    parts = []
    for i, part in enumerate(re.split(r"(QZX[0-9]+QZX)", template)):
        if i % 2 == 0:
            parts.append(re.escape(part))
        else:  # a slot shown twice (a label in two buttons) must be the same text both times
            parts.append(f"(?P={part})" if part in seen else f"(?P<{part}>.*?)")
            seen.add(part)
    pattern = "".join(parts)
    match = re.fullmatch(pattern, actual, re.DOTALL)
    assert match is not None, (template, actual)
    return [(name, match.group(name)) for name in dict.fromkeys(names) if name in mapping]


def _assert_markdown_piece(piece: str, original: str) -> None:
    assert html.unescape(piece) == original, (piece, original)
    bare = _REFERENCE.sub("", piece)
    assert _RAW_MARKUP.search(bare) is None, (piece, _RAW_MARKUP.search(bare))
    assert _BLOCK_START.search(piece) is None, piece  # a line that starts with a reference is text


def _assert_plain_piece(piece: str, original: str) -> None:
    assert piece == original


# --- Feishu ---


def _feishu_leaves(node: Any, kind: str = "plain") -> list[tuple[str, str]]:
    """(kind, text) of every string a reader sees: markdown element contents, plain_text contents."""
    found: list[tuple[str, str]] = []
    if isinstance(node, dict):
        tag = node.get("tag")
        if tag == "markdown":
            found.append(("markdown", node["content"]))
        elif tag == "plain_text":
            found.append(("plain", node["content"]))
        for key, value in node.items():
            if key != "content" or tag not in ("markdown", "plain_text"):
                found.extend(_feishu_leaves(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(_feishu_leaves(item))
    return found


@pytest.mark.parametrize("closed", [False, True])
@pytest.mark.parametrize("shift", [0, 5])
def test_feishu_card(closed: bool, shift: int) -> None:
    hostile, template, mapping = _pair(closed=closed, shift=shift)
    got, want = feishu_cards.render_card(hostile), feishu_cards.render_card(template)
    got_leaves, want_leaves = _feishu_leaves(got), _feishu_leaves(want)
    assert [k for k, _ in got_leaves] == [k for k, _ in want_leaves]
    checked = 0
    for (kind, actual), (_, pattern) in zip(got_leaves, want_leaves, strict=True):
        for name, piece in _pieces(pattern, actual, mapping):
            (_assert_markdown_piece if kind == "markdown" else _assert_plain_piece)(piece, mapping[name])
            checked += 1
    assert checked >= 5
    # No link or image anywhere in the card's markdown, and no URL-bearing element at all.
    markdown = "\n".join(text for kind, text in got_leaves if kind == "markdown")
    assert "](" not in markdown and "![" not in markdown and "<" not in markdown
    assert not any(key in json.dumps(got) for key in ('"url"', '"img_key"', '"href"'))


# --- DingTalk ---

_OURS = re.compile(r'<font color="#FF0000">|</font>')


_LINK_TARGET = re.compile(r"\]\(([^)]*)\)")


def _assert_dingtalk_markdown(template: str, actual: str, mapping: dict[str, str]) -> int:
    # Links in the markdown are only the adapter's own buttons; no image; HTML only the urgent mark.
    for url in _LINK_TARGET.findall(actual):
        command = parse_command(unquote(url.split("content=", 1)[-1]))
        assert url.startswith("dtmd://dingtalkclient/sendMessage?content=") and command is not None
        assert command.card_id == "card-1"
    assert "![" not in actual and "<" not in _OURS.sub("", actual)
    # The link targets (percent-encoded commands) are checked above; compare the texts around them.
    pieces = _pieces(_LINK_TARGET.sub("](URL)", template), _LINK_TARGET.sub("](URL)", actual), mapping)
    for name, piece in pieces:
        _assert_markdown_piece(piece, mapping[name])
    return len(pieces)


@pytest.mark.parametrize("closed", [False, True])
@pytest.mark.parametrize("options", [2, 7])  # 7: more buttons than an action card holds: markdown links
@pytest.mark.parametrize("urgent", [False, True])
def test_dingtalk_robot_card(closed: bool, options: int, urgent: bool) -> None:
    hostile, template, mapping = _pair(closed=closed, options=options)
    prefix = {"QZX99QZX": "客户补充：[点此](dtmd://dingtalkclient/sendMessage?content=拒单) ![](http://x/p.png)"}
    mapping.update(prefix)
    got = dingtalk_cards.robot_card_message(hostile, prefix_text=prefix["QZX99QZX"], urgent=urgent)
    want = dingtalk_cards.robot_card_message(template, prefix_text="QZX99QZX", urgent=urgent)
    assert got.msg_key == want.msg_key
    assert set(got.msg_param) == set(want.msg_param)
    checked = 0
    for key, pattern in want.msg_param.items():
        if key == "text":
            checked += _assert_dingtalk_markdown(pattern, got.msg_param[key], mapping)
        elif "URL" in key:  # the button's command: ours, carrying our card id
            command = parse_command(unquote(got.msg_param[key].split("content=", 1)[1]))
            assert command is not None and command.card_id == "card-1"
        else:  # title and button titles are plain text on DingTalk
            for name, piece in _pieces(pattern, got.msg_param[key], mapping):
                _assert_plain_piece(piece, mapping[name])
    assert checked >= 8


def test_dingtalk_template_markdown_and_urgent_text() -> None:
    hostile, template, mapping = _pair()
    got = dingtalk_cards.template_params(hostile, urgent=True)["markdown"]
    assert _assert_dingtalk_markdown(dingtalk_cards.template_params(template, urgent=True)["markdown"], got,
                                     mapping) >= 8
    text = HOSTILE[0] + "\n" + HOSTILE[1]
    urgent = dingtalk_cards.text_message(text, urgent=True)
    assert _assert_dingtalk_markdown(dingtalk_cards.text_message("QZX0QZX", urgent=True).msg_param["text"],
                                     urgent.msg_param["text"], {"QZX0QZX": text}) == 1
    assert dingtalk_cards.text_message(text).msg_param == {"content": text}  # sampleText: plain


# --- WeCom: template cards are plain text; the only markup is `$userName=…$` under id translation ---


def _strings(node: Any, path: str = "") -> list[tuple[str, str]]:
    if isinstance(node, dict):
        return [s for key, value in node.items() for s in _strings(value, f"{path}.{key}")]
    if isinstance(node, list):
        return [s for i, value in enumerate(node) for s in _strings(value, f"{path}[{i}]")]
    return [(path, node)] if isinstance(node, str) else []


@pytest.mark.parametrize("closed", [False, True])
@pytest.mark.parametrize("urgent", [False, True])
@pytest.mark.parametrize("shift", [0, 7, 12])  # $userName=… lands in the text field (not shown), body, title
def test_wecom_card(closed: bool, urgent: bool, shift: int) -> None:
    hostile, _template, mapping = _pair(closed=closed, shift=shift)
    card_url = "https://example.com/card"
    got = wecom_cards.render_card(hostile, "task-1", card_url=card_url, urgent=urgent, recipient_id="zhangsan")
    strings = _strings(got)
    assert {text for path, text in strings if path.endswith(".url")} <= {card_url}  # the only link: ours
    # The adapter's own call-out of the recipient (possibly cut to fit) is the one translation allowed.
    own = re.compile(r"\$userName=zhangsan\$|\$userName=zhang[a-z]*…")
    shown = [own.sub("", text) for path, text in strings if not path.endswith(".url")]
    for text in shown:
        assert "$userName=" not in text  # no name translation triggered by user text
        assert "&#38;" not in text  # plain text: not escaped for markdown (a reader would see "&#38;")
    visible = "\n".join(shown).replace(ZERO_WIDTH_SPACE, "")
    # Each text is there as typed (cut to WeCom's display lengths, which keep at least 9 characters).
    reached = [original for original in mapping.values() if original[:9].replace(ZERO_WIDTH_SPACE, "") in visible]
    assert len(reached) >= 8, visible
