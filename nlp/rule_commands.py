"""Parser for the admins' rule commands in chat (Chinese, with English aliases).

Grammar (spaces may be half- or full-width; keyword lists may also be separated by ，、;):

    规则 [列表]                        list categories and keywords      (别名: list, ls)
    规则 添加 <分类> <词> [<词>…]       add keywords                     (加, 增加, add)
    规则 删除 <分类> <词> [<词>…]       remove keywords (≥3 needs 确认)   (删, 移除, 去掉, remove, rm)
    规则 新增分类 <分类> [说明…]        add a category                   (添加分类, add-category)
    规则 重命名 <旧分类> <新分类>        rename a category                (改名, rename)
    规则 删除分类 <分类>                delete a category (needs 确认)    (移除分类, delete-category)
    规则 测试 <消息原文>                dry run of the classifier         (test)
    规则 历史                          rule versions                     (history)
    规则 回滚 <版本号>                  roll back to a version (v3 / 3)   (rollback)
    规则 帮助                          this help                         (help)
    确认 / 取消                        confirm / cancel a pending risky change (confirm / cancel)

A keyword containing spaces or separators can be quoted: "check engine", 「咔 咔」.
`parse_rule_command` returns None for text that is not a rule command at all, so the
caller can hand it to the normal conversation; 确认/取消 parse everywhere, and only mean
something when the caller has a pending change for that admin.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from nlp.errors import RuleCommandError
from nlp.rule_changes import (
    AddCategory,
    AddKeywords,
    DeleteCategory,
    RemoveKeywords,
    RenameCategory,
    RuleChange,
    is_high_risk,
)

RULE_HELP = """规则管理命令（仅管理员可用）：
规则 列表 —— 查看所有分类和关键词
规则 添加 <分类> <关键词…> —— 例：规则 添加 机械类 咔咔响 咯噔
规则 删除 <分类> <关键词…> —— 例：规则 删除 机械类 咔咔响（一次删 3 个及以上需回复「确认」）
规则 新增分类 <分类> [说明] —— 例：规则 新增分类 制冷类 空调不制冷、漏氟
规则 重命名 <旧分类> <新分类> —— 例：规则 重命名 制冷类 空调类
规则 删除分类 <分类> —— 例：规则 删除分类 制冷类（需回复「确认」）
规则 测试 <消息> —— 试分类，不会修改规则；有待确认的修改时同时显示修改后的结果
规则 历史 —— 查看规则版本记录
规则 回滚 <版本号> —— 例：规则 回滚 3（v0 为出厂默认规则；会删除分类或 3 个及以上关键词的回滚需回复「确认」）
确认 / 取消 —— 确认或放弃待确认的修改（15 分钟内有效）
说明：空格可用全角或半角；多个关键词可用空格、逗号或顿号分隔；含空格的关键词请加引号，如 "check engine"。
关键词按原样匹配，不支持通配符或正则。同一关键词出现在多个分类时，只计入优先级最高的分类。
英文和数字只匹配完整单词，如 error 不会匹配 onerror。"""


@dataclass(frozen=True, slots=True)
class ListRules:
    pass


@dataclass(frozen=True, slots=True)
class ShowHelp:
    pass


@dataclass(frozen=True, slots=True)
class ChangeRules:
    change: RuleChange

    @property
    def needs_confirmation(self) -> bool:
        return is_high_risk(self.change)


@dataclass(frozen=True, slots=True)
class DryRun:
    text: str  # the message exactly as the admin typed it (the classifier normalises it)


@dataclass(frozen=True, slots=True)
class ShowHistory:
    pass


@dataclass(frozen=True, slots=True)
class Rollback:
    version: int


@dataclass(frozen=True, slots=True)
class Confirm:
    pass


@dataclass(frozen=True, slots=True)
class Cancel:
    pass


RuleCommand = ListRules | ShowHelp | ChangeRules | DryRun | ShowHistory | Rollback | Confirm | Cancel

_USAGE = {
    "list": "规则 列表",
    "add": "规则 添加 <分类> <关键词…>，例：规则 添加 机械类 咔咔响 咯噔",
    "remove": "规则 删除 <分类> <关键词…>，例：规则 删除 机械类 咔咔响",
    "add_category": "规则 新增分类 <分类> [说明]，例：规则 新增分类 制冷类",
    "rename": "规则 重命名 <旧分类> <新分类>，例：规则 重命名 制冷类 空调类",
    "delete_category": "规则 删除分类 <分类>，例：规则 删除分类 制冷类",
    "test": "规则 测试 <消息>，例：规则 测试 没有异响，就是黑屏",
    "history": "规则 历史",
    "rollback": "规则 回滚 <版本号>，例：规则 回滚 3",
    "help": "规则 帮助",
}

# Longer verbs first, so 删除分类 is not read as 删除 + 分类.
_VERBS: tuple[tuple[str, str], ...] = tuple(
    sorted(
        (
            (alias, verb)
            for verb, aliases in {
                "list": ("列表", "列出", "查看", "list", "ls"),
                "add": ("添加", "增加", "加", "add"),
                "remove": ("删除", "删", "移除", "去掉", "remove", "rm", "del"),
                "add_category": ("新增分类", "添加分类", "增加分类", "加分类", "add-category", "addcat"),
                "rename": ("重命名", "改名", "rename", "mv"),
                "delete_category": ("删除分类", "移除分类", "删分类", "delete-category", "delcat"),
                "test": ("测试", "试试", "test"),
                "history": ("历史", "版本", "history", "log"),
                "rollback": ("回滚", "恢复", "rollback", "revert"),
                "help": ("帮助", "help", "?"),
            }.items()
            for alias in aliases
        ),
        key=lambda pair: len(pair[0]),
        reverse=True,
    )
)
_PREFIX = re.compile(r"^/?(?:规则|rules?)(?=\s|$|[^a-z])", re.IGNORECASE)
_CONFIRM = {"确认", "确定", "confirm", "yes"}
_CANCEL = {"取消", "算了", "cancel", "no"}
_ARGUMENT = re.compile(r'"([^"]*)"|“([^”]*)”|「([^」]*)」|『([^』]*)』|([^\s,，、;；"“「『]+)')
_VERSION = re.compile(r"^(?:v|版本)?(\d{1,9})$", re.IGNORECASE)


def parse_rule_command(text: str) -> RuleCommand | None:
    """Parse one chat message. None: not a rule command. Raises `RuleCommandError` when malformed."""
    line = unicodedata.normalize("NFKC", text).strip()
    lowered = line.casefold()
    if lowered in _CONFIRM:
        return Confirm()
    if lowered in _CANCEL:
        return Cancel()
    prefix = _PREFIX.match(line)
    if prefix is None:
        return None
    rest = line[prefix.end() :].strip()
    if not rest:
        return ListRules()
    verb, arguments = _split_verb(rest)
    if verb is None:
        raise RuleCommandError(f"看不懂这条规则命令：「{_clip(rest)}」。\n{RULE_HELP}", usage=RULE_HELP, command=rest)
    usage = _USAGE[verb]
    if verb == "test":
        # The message is kept verbatim (only outer spaces trimmed): spacing and punctuation matter to it.
        original = _raw_arguments(text)
        if not original:
            raise RuleCommandError(f"请在「规则 测试」后面写上要测试的消息。用法：{usage}", usage=usage, verb=verb)
        return DryRun(original)
    args = _split_arguments(arguments, usage, verb)
    match verb:
        case "list":
            return ListRules() if not args else _too_many(usage, verb)
        case "help":
            return ShowHelp()
        case "history":
            return ShowHistory() if not args else _too_many(usage, verb)
        case "rollback":
            if len(args) != 1 or not (version := _VERSION.match(args[0])):
                raise RuleCommandError(f"请给出一个版本号（正整数）。用法：{usage}", usage=usage, verb=verb)
            return Rollback(int(version.group(1)))
        case "add" | "remove":
            if len(args) < 2:
                raise RuleCommandError(f"请写明分类和至少一个关键词。用法：{usage}", usage=usage, verb=verb)
            change: RuleChange = (AddKeywords if verb == "add" else RemoveKeywords)(args[0], tuple(args[1:]))
            return ChangeRules(change)
        case "add_category":
            if not args:
                raise RuleCommandError(f"请写明新分类的名称。用法：{usage}", usage=usage, verb=verb)
            return ChangeRules(AddCategory(args[0], description=" ".join(args[1:])))
        case "rename":
            if len(args) != 2:
                raise RuleCommandError(f"请写明原分类名和新分类名（两个）。用法：{usage}", usage=usage, verb=verb)
            return ChangeRules(RenameCategory(args[0], args[1]))
        case "delete_category":
            if len(args) != 1:
                raise RuleCommandError(f"一次只能删除一个分类。用法：{usage}", usage=usage, verb=verb)
            return ChangeRules(DeleteCategory(args[0]))
    raise AssertionError(f"unhandled verb {verb}")  # pragma: no cover - every verb in _VERBS is matched above


def _split_verb(rest: str) -> tuple[str | None, str]:
    lowered = rest.casefold()
    for alias, verb in _VERBS:
        if lowered.startswith(alias) and (len(rest) == len(alias) or rest[len(alias)].isspace()):
            return verb, rest[len(alias) :].strip()
    return None, rest


def _split_arguments(arguments: str, usage: str, verb: str) -> list[str]:
    if arguments.count('"') % 2:
        raise RuleCommandError(f"引号没有配对：{_clip(arguments)}。用法：{usage}", usage=usage, verb=verb)
    return [next(g for g in match.groups() if g is not None) for match in _ARGUMENT.finditer(arguments)]


def _raw_arguments(text: str) -> str:
    """The text after `规则 测试` in the original (un-normalised) message."""
    normalised = unicodedata.normalize("NFKC", text)
    match = re.match(r"^\s*/?(?:规则|rules?)\s*(?:测试|试试|test)(?:\s+|$)", normalised, re.IGNORECASE)
    if match is None:  # pragma: no cover - only called after the same prefix and verb matched
        return ""
    # NFKC can change length (full-width forms don't, ligatures may): fall back to the normalised tail.
    if len(normalised) == len(text):
        return text[match.end() :].strip()
    return normalised[match.end() :].strip()


def _too_many(usage: str, verb: str) -> RuleCommand:
    raise RuleCommandError(f"这条命令不需要参数。用法：{usage}", usage=usage, verb=verb)


def _clip(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[:limit] + "…"
