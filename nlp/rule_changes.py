"""Admin edits of a `RuleSet`: pure functions from (rules, change) to a new rule set plus a Chinese summary.

Every change is validated as a whole before anything is built, so an invalid command
changes nothing (no half-applied keyword lists). Keywords are literal text: regex or SQL
metacharacters (`.*`, `'; DROP TABLE`) are stored and matched character for character.

The returned rule set has `version + 1` when something changed; the persistence layer may
renumber it (`dataclasses.replace(result.rules, version=...)`) when it stores history.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, fields, replace
from typing import Any

from nlp.errors import RuleChangeError, RuleDataError
from nlp.normalize import display_form, normalize
from nlp.rules import PRECEDENCE_RULE_ZH, CategoryRule, RuleSet

MAX_KEYWORD_LENGTH = 20
MAX_CATEGORY_NAME_LENGTH = 16
MAX_KEYWORDS_PER_CHANGE = 50
HIGH_RISK_REMOVALS = 3  # removing this many keywords at once needs a confirmation
# Category names appear in chat commands and cards: letters, digits, CJK, - and _ only.
_CATEGORY_NAME = re.compile(r"^[\w\-]+$")


@dataclass(frozen=True, slots=True)
class AddKeywords:
    category: str
    keywords: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RemoveKeywords:
    category: str
    keywords: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AddCategory:
    name: str
    description: str = ""
    precedence: int | None = None  # None: after every existing category


@dataclass(frozen=True, slots=True)
class RenameCategory:
    old_name: str
    new_name: str


@dataclass(frozen=True, slots=True)
class DeleteCategory:
    name: str


RuleChange = AddKeywords | RemoveKeywords | AddCategory | RenameCategory | DeleteCategory


@dataclass(frozen=True, slots=True)
class ChangeResult:
    rules: RuleSet  # the new rule set (the old one, unchanged, when `changed` is False)
    changed: bool
    summary: str  # one line for the admin, Chinese
    notices: tuple[str, ...] = ()  # things the admin should know: duplicates, keywords in other categories

    @property
    def message(self) -> str:
        """Summary and notices as one chat reply."""
        return "\n".join((self.summary, *self.notices))


_CHANGE_TYPES: dict[str, type[RuleChange]] = {
    "add_keywords": AddKeywords,
    "remove_keywords": RemoveKeywords,
    "add_category": AddCategory,
    "rename_category": RenameCategory,
    "delete_category": DeleteCategory,
}


def change_to_dict(change: RuleChange) -> dict[str, Any]:
    """JSON form of a change (a pending change waiting for 确认 is stored like this)."""
    kind = next(name for name, cls in _CHANGE_TYPES.items() if isinstance(change, cls))
    data = {f.name: getattr(change, f.name) for f in fields(change)}
    return {"type": kind, **{k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}}


def change_from_dict(data: Mapping[str, Any]) -> RuleChange:
    """Inverse of `change_to_dict`. Raises `RuleDataError` for anything else."""
    cls = _CHANGE_TYPES.get(data.get("type", "")) if isinstance(data, Mapping) else None
    if cls is None:
        raise RuleDataError("待确认的规则修改格式不正确。", data=repr(data)[:200])
    values: dict[str, Any] = {}
    for f in fields(cls):
        if f.name not in data:
            if f.default is MISSING:
                raise RuleDataError("待确认的规则修改缺少字段。", field=f.name)
            continue
        value = data[f.name]
        values[f.name] = tuple(value) if isinstance(value, list) else value
    return cls(**values)


def is_high_risk(change: RuleChange) -> bool:
    """Deleting a category or removing several keywords at once must be confirmed first."""
    if isinstance(change, DeleteCategory):
        return True
    return isinstance(change, RemoveKeywords) and len(set(map(normalize, change.keywords))) >= HIGH_RISK_REMOVALS


def describe_change(change: RuleChange) -> str:
    """What the change will do, in Chinese (for the confirmation question)."""
    match change:
        case AddKeywords(category, keywords):
            return f"向「{category}」添加关键词：{_join(keywords)}"
        case RemoveKeywords(category, keywords):
            return f"从「{category}」删除 {len(keywords)} 个关键词：{_join(keywords)}"
        case AddCategory(name):
            return f"新增分类「{name}」"
        case RenameCategory(old_name, new_name):
            return f"把分类「{old_name}」重命名为「{new_name}」"
        case DeleteCategory(name):
            return f"删除分类「{name}」及其全部关键词"
    raise TypeError(f"not a rule change: {change!r}")


def apply_change(rules: RuleSet, change: RuleChange) -> ChangeResult:
    """Validate `change` against `rules` and return the resulting rule set. Raises `RuleChangeError`."""
    match change:
        case AddKeywords():
            return _add_keywords(rules, change)
        case RemoveKeywords():
            return _remove_keywords(rules, change)
        case AddCategory():
            return _add_category(rules, change)
        case RenameCategory():
            return _rename_category(rules, change)
        case DeleteCategory():
            return _delete_category(rules, change)
    raise TypeError(f"not a rule change: {change!r}")


def _add_keywords(rules: RuleSet, change: AddKeywords) -> ChangeResult:
    category = _existing_category(rules, change.category)
    keywords = _clean_keywords(change.keywords)
    present = {normalize(k) for k in category.keywords}
    notices: list[str] = []
    added: list[str] = []
    for keyword in keywords:
        key = normalize(keyword)
        if key in present:
            notices.append(f"「{keyword}」已在「{category.name}」中，未重复添加。")
            continue
        present.add(key)
        added.append(keyword)
        others = [c for c in rules.keyword_owners(keyword) if c.name != category.name]
        if others:
            winner = min([*others, category], key=lambda c: c.precedence)
            where = "、".join(f"「{c.name}」（优先级 {c.precedence}）" for c in others)
            effect = (
                f"添加后它将计入「{category.name}」。"
                if winner.name == category.name
                else f"添加后它仍只计入「{winner.name}」，"
                f"在「{category.name}」（优先级 {category.precedence}）中暂不生效。"
            )
            notices.append(f"注意：「{keyword}」已在{where}中。{PRECEDENCE_RULE_ZH}{effect}")
    if not added:
        return ChangeResult(rules, False, f"「{category.name}」没有变化：关键词都已存在。", tuple(notices))
    updated = replace(category, keywords=(*category.keywords, *added))
    new_rules = _with_category(rules, category.name, updated)
    summary = f"已向「{category.name}」添加 {len(added)} 个关键词：{_join(added)}{_versions(rules, new_rules)}"
    return ChangeResult(new_rules, True, summary, tuple(notices))


def _remove_keywords(rules: RuleSet, change: RemoveKeywords) -> ChangeResult:
    category = _existing_category(rules, change.category)
    keywords = _clean_keywords(change.keywords)
    present = {normalize(k): k for k in category.keywords}
    missing = [k for k in keywords if normalize(k) not in present]
    if missing:
        raise RuleChangeError(
            f"「{category.name}」中没有这些关键词：{_join(missing)}。未做任何修改；可用「规则 列表」查看现有关键词。",
            code="unknown_keyword",
            category=category.name,
            keywords=missing,
        )
    removing = {normalize(k) for k in keywords}
    updated = replace(category, keywords=tuple(k for k in category.keywords if normalize(k) not in removing))
    new_rules = _with_category(rules, category.name, updated)
    removed = [present[k] for k in dict.fromkeys(map(normalize, keywords))]
    summary = f"已从「{category.name}」删除 {len(removed)} 个关键词：{_join(removed)}{_versions(rules, new_rules)}"
    return ChangeResult(new_rules, True, summary)


def _add_category(rules: RuleSet, change: AddCategory) -> ChangeResult:
    name = _clean_category_name(change.name)
    if rules.category(name) is not None:
        raise RuleChangeError(f"分类「{name}」已存在。", code="category_exists", category=name)
    precedence = change.precedence
    if precedence is None:
        precedence = max((c.precedence for c in rules.categories), default=0) + 1
    new = CategoryRule(name=name, keywords=(), precedence=precedence, description=display_form(change.description))
    new_rules = RuleSet(rules.version + 1, (*rules.categories, new))
    summary = f"已新增分类「{name}」（优先级 {precedence}，规则版本 {rules.version} → {new_rules.version}）"
    notice = f"新分类还没有关键词，请用「规则 添加 {name} 关键词…」添加。{PRECEDENCE_RULE_ZH}"
    return ChangeResult(new_rules, True, summary, (notice,))


def _rename_category(rules: RuleSet, change: RenameCategory) -> ChangeResult:
    category = _existing_category(rules, change.old_name)
    new_name = _clean_category_name(change.new_name)
    if normalize(new_name) == normalize(category.name):
        return ChangeResult(rules, False, f"分类名称没有变化：「{category.name}」。")
    if rules.category(new_name) is not None:
        raise RuleChangeError(f"分类「{new_name}」已存在，不能重名。", code="category_exists", category=new_name)
    new_rules = _with_category(rules, category.name, replace(category, name=new_name))
    summary = f"已把分类「{category.name}」重命名为「{new_name}」（规则版本 {rules.version} → {new_rules.version}）"
    return ChangeResult(new_rules, True, summary)


def _delete_category(rules: RuleSet, change: DeleteCategory) -> ChangeResult:
    category = _existing_category(rules, change.name)
    if len(rules.categories) == 1:
        raise RuleChangeError(
            "不能删除最后一个分类：至少要保留一个故障分类。", code="last_category", category=category.name
        )
    remaining = tuple(c for c in rules.categories if c.name != category.name)
    new_rules = RuleSet(rules.version + 1, remaining)
    summary = (
        f"已删除分类「{category.name}」及其 {len(category.keywords)} 个关键词"
        f"（规则版本 {rules.version} → {new_rules.version}）"
    )
    return ChangeResult(new_rules, True, summary)


def _existing_category(rules: RuleSet, name: str) -> CategoryRule:
    category = rules.category(name)
    if category is None:
        known = "、".join(c.name for c in rules.by_precedence()) or "（无）"
        raise RuleChangeError(
            f"没有名为「{display_form(name)}」的分类。现有分类：{known}。",
            code="unknown_category",
            category=name,
            known=[c.name for c in rules.categories],
        )
    return category


def _clean_keywords(raw: tuple[str, ...]) -> list[str]:
    """Validate every keyword first, so one bad keyword rejects the whole change."""
    if not raw:
        raise RuleChangeError("请至少给出一个关键词。", code="empty_keyword")
    if len(raw) > MAX_KEYWORDS_PER_CHANGE:
        raise RuleChangeError(
            f"一次最多修改 {MAX_KEYWORDS_PER_CHANGE} 个关键词（这次有 {len(raw)} 个）。",
            code="too_many_keywords",
            count=len(raw),
            limit=MAX_KEYWORDS_PER_CHANGE,
        )
    cleaned: list[str] = []
    for keyword in raw:
        text = display_form(keyword)
        if not text:
            raise RuleChangeError("关键词不能为空。", code="empty_keyword")
        if len(text) > MAX_KEYWORD_LENGTH:
            raise RuleChangeError(
                f"关键词「{text[:MAX_KEYWORD_LENGTH]}…」太长了："
                f"最多 {MAX_KEYWORD_LENGTH} 个字（这个有 {len(text)} 个）。",
                code="keyword_too_long",
                keyword=text,
                length=len(text),
                limit=MAX_KEYWORD_LENGTH,
            )
        if not any(ch.isalnum() for ch in text):
            raise RuleChangeError(
                f"关键词「{text}」里没有文字或数字，无法匹配消息。", code="keyword_no_text", keyword=text
            )
        cleaned.append(text)
    # Same keyword twice in one command: keep the first spelling.
    unique: dict[str, str] = {}
    for keyword in cleaned:
        unique.setdefault(normalize(keyword), keyword)
    return list(unique.values())


def _clean_category_name(raw: str) -> str:
    name = display_form(raw)
    if not name:
        raise RuleChangeError("分类名称不能为空。", code="bad_category_name", name=raw)
    if len(name) > MAX_CATEGORY_NAME_LENGTH or not _CATEGORY_NAME.match(name):
        raise RuleChangeError(
            f"分类名称「{name[:MAX_CATEGORY_NAME_LENGTH]}」不可用："
            f"最多 {MAX_CATEGORY_NAME_LENGTH} 个字，只能包含汉字、字母、数字、- 和 _。",
            code="bad_category_name",
            name=name,
        )
    return name


def _with_category(rules: RuleSet, name: str, updated: CategoryRule) -> RuleSet:
    return RuleSet(rules.version + 1, tuple(updated if c.name == name else c for c in rules.categories))


def _versions(old: RuleSet, new: RuleSet) -> str:
    return f"（规则版本 {old.version} → {new.version}）"


def _join(words: list[str] | tuple[str, ...]) -> str:
    return "、".join(words)
