"""What changed between two rule sets: for the audit trail, the admin's reply and rollback risk.

Categories are matched by name (normalised), so a rename shows as one category removed and
one added; keywords are compared normalised, so 咯噔響 and 咯噔响 are the same keyword.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nlp.normalize import normalize
from nlp.rule_changes import HIGH_RISK_REMOVALS
from nlp.rules import RuleSet


@dataclass(frozen=True, slots=True)
class RuleDiff:
    added_categories: tuple[str, ...] = ()
    removed_categories: tuple[str, ...] = ()
    keywords_added: dict[str, tuple[str, ...]] = field(default_factory=dict)  # category → keywords
    keywords_removed: dict[str, tuple[str, ...]] = field(default_factory=dict)
    precedence_changed: dict[str, tuple[int, int]] = field(default_factory=dict)  # category → (old, new)

    @property
    def empty(self) -> bool:
        return not (self.added_categories or self.removed_categories or self.keywords_added
                    or self.keywords_removed or self.precedence_changed)

    @property
    def high_risk(self) -> bool:
        """Same bar as `is_high_risk` for a single change: a category goes, or several keywords do."""
        removed = sum(len(words) for words in self.keywords_removed.values())
        return bool(self.removed_categories) or removed >= HIGH_RISK_REMOVALS

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "added_categories": list(self.added_categories),
            "removed_categories": list(self.removed_categories),
            "keywords_added": {c: list(k) for c, k in self.keywords_added.items()},
            "keywords_removed": {c: list(k) for c, k in self.keywords_removed.items()},
            "precedence_changed": {c: list(p) for c, p in self.precedence_changed.items()},
        }

    def lines(self, limit: int = 12) -> list[str]:
        """Chinese, one fact per line (keyword lists clipped to `limit` words)."""
        out = [f"新增分类「{name}」" for name in self.added_categories]
        out += [f"删除分类「{name}」" for name in self.removed_categories]
        out += [f"「{c}」添加关键词：{_clip(words, limit)}" for c, words in self.keywords_added.items()]
        out += [f"「{c}」删除关键词：{_clip(words, limit)}" for c, words in self.keywords_removed.items()]
        out += [f"「{c}」优先级 {old} → {new}" for c, (old, new) in self.precedence_changed.items()]
        return out


def diff_rules(old: RuleSet, new: RuleSet) -> RuleDiff:
    old_by_name = {normalize(c.name): c for c in old.categories}
    new_by_name = {normalize(c.name): c for c in new.categories}
    added_keywords: dict[str, tuple[str, ...]] = {}
    removed_keywords: dict[str, tuple[str, ...]] = {}
    precedence: dict[str, tuple[int, int]] = {}
    for key, after in new_by_name.items():
        before = old_by_name.get(key)
        if before is None:
            continue
        before_words = {normalize(k) for k in before.keywords}
        after_words = {normalize(k) for k in after.keywords}
        if gained := tuple(k for k in after.keywords if normalize(k) not in before_words):
            added_keywords[after.name] = gained
        if lost := tuple(k for k in before.keywords if normalize(k) not in after_words):
            removed_keywords[after.name] = lost
        if before.precedence != after.precedence:
            precedence[after.name] = (before.precedence, after.precedence)
    return RuleDiff(
        added_categories=tuple(c.name for key, c in new_by_name.items() if key not in old_by_name),
        removed_categories=tuple(c.name for key, c in old_by_name.items() if key not in new_by_name),
        keywords_added=added_keywords,
        keywords_removed=removed_keywords,
        precedence_changed=precedence,
    )


def _clip(words: tuple[str, ...], limit: int) -> str:
    shown = "、".join(words[:limit])
    return shown + (f" 等 {len(words)} 个" if len(words) > limit else "")
