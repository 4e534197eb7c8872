"""Immutable keyword rule model, its JSON form and the shipped default rule set.

A rule set is data an admin edits from the chat (see `rule_changes`); every edit yields a
new `RuleSet`, so a classifier built on one never sees a half-applied change.

Precedence: a smaller `precedence` number wins. When one keyword sits in several
categories it counts only for the category with the smallest number, and a tie between
category scores is also broken by it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from nlp.errors import RuleDataError
from nlp.normalize import normalize

PRECEDENCE_RULE_ZH = (
    "同一关键词出现在多个分类时，只计入优先级数字最小（最优先）的分类；两个分类得分相同时也按优先级决定。"
)
_BAD = "规则数据格式不正确："


@dataclass(frozen=True, slots=True)
class CategoryRule:
    """One routable fault category.

    `keywords` are strong evidence (each counts 1.0); `hints` are component words
    (刹车, 屏幕, 电机...) that only count, weakly, when the message already looks like a fault.
    """

    name: str
    keywords: tuple[str, ...]
    precedence: int = 100
    description: str = ""
    hints: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "precedence": self.precedence,
            "description": self.description,
            "keywords": list(self.keywords),
            "hints": list(self.hints),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CategoryRule:
        try:
            name = data["name"]
            keywords = data.get("keywords", [])
            hints = data.get("hints", [])
            precedence = data.get("precedence", 100)
            description = data.get("description", "")
        except (KeyError, TypeError, AttributeError) as exc:
            raise RuleDataError(_BAD + "分类缺少名称。", field="name", data=repr(data)[:200]) from exc
        if not isinstance(name, str) or not name.strip():
            raise RuleDataError(_BAD + "分类名称必须是非空文字。", field="name", value=repr(name)[:100])
        if not _is_str_list(keywords) or not _is_str_list(hints):
            raise RuleDataError(_BAD + f"分类「{name}」的关键词必须是文字列表。", field="keywords", category=name)
        if not isinstance(precedence, int) or isinstance(precedence, bool):
            raise RuleDataError(_BAD + f"分类「{name}」的优先级必须是整数。", field="precedence", category=name)
        if not isinstance(description, str):
            raise RuleDataError(_BAD + f"分类「{name}」的说明必须是文字。", field="description", category=name)
        return cls(
            name=name, keywords=tuple(keywords), precedence=precedence, description=description, hints=tuple(hints)
        )


@dataclass(frozen=True, slots=True)
class RuleSet:
    """A versioned, immutable set of category rules."""

    version: int
    categories: tuple[CategoryRule, ...]

    def category(self, name: str) -> CategoryRule | None:
        """The category called `name` (compared after normalisation), or None."""
        key = normalize(name)
        return next((c for c in self.categories if normalize(c.name) == key), None)

    def by_precedence(self) -> tuple[CategoryRule, ...]:
        """Categories, most preferred first (stable for equal precedence)."""
        return tuple(sorted(self.categories, key=lambda c: c.precedence))

    def keyword_owners(self, keyword: str) -> tuple[CategoryRule, ...]:
        """Categories whose keywords contain `keyword` (normalised comparison), most preferred first."""
        key = normalize(keyword)
        return tuple(c for c in self.by_precedence() if any(normalize(k) == key for k in c.keywords))

    def __iter__(self) -> Iterator[CategoryRule]:
        return iter(self.categories)

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "categories": [c.to_dict() for c in self.categories]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=2)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RuleSet:
        if not isinstance(data, Mapping):
            raise RuleDataError(_BAD + "应为 JSON 对象。", type=type(data).__name__)
        version = data.get("version")
        categories = data.get("categories")
        if not isinstance(version, int) or isinstance(version, bool) or version < 0:
            raise RuleDataError(_BAD + "版本号必须是非负整数。", field="version", value=repr(version)[:50])
        if not isinstance(categories, list):
            raise RuleDataError(_BAD + "categories 必须是列表。", field="categories")
        parsed = tuple(CategoryRule.from_dict(c) for c in categories)
        names = [normalize(c.name) for c in parsed]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise RuleDataError(
                _BAD + f"分类重名：{'、'.join(duplicates)}。", field="categories", duplicates=duplicates
            )
        return cls(version=version, categories=parsed)

    @classmethod
    def from_json(cls, text: str) -> RuleSet:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise RuleDataError("规则数据不是合法的 JSON。", position=exc.pos) from exc
        return cls.from_dict(data)


def default_rules() -> RuleSet:
    """The shipped default rule set (机械类, 电控类) for car repair, appliances, elevators and production lines."""
    text = resources.files("nlp").joinpath("default_rules.json").read_text(encoding="utf-8")
    return RuleSet.from_json(text)


def _is_str_list(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)
