"""Everything the classifier looks for, indexed by normalised surface form, and the span matcher.

A term matches only a run of whole jieba tokens (so 响 never fires inside 影响, 抖 never
inside 抖音, error never inside onerror: the segmenter never cuts a Latin word), and at each
position the longest run wins (没反应 beats 没 + 反应, 喇叭不响 beats 不 + 响). Admin keywords
are plain strings, never patterns: `'.*` is looked up character for character.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import NamedTuple

from nlp.intents import Intent
from nlp.lexicon import Lexicon
from nlp.normalize import normalize
from nlp.rules import RuleSet

MAX_SPAN_TOKENS = 6  # no term needs more tokens than this, however jieba cuts it


@dataclass(frozen=True, slots=True)
class Term:
    """What one surface form means. A surface may carry several roles (主要 is a breaker and an intensifier)."""

    keyword: str | None = None  # rule keyword (display form) this surface stands for
    category: str | None = None  # category the keyword counts for, after precedence
    hint_category: str | None = None
    fault_cue: bool = False
    negation_before: bool = False
    negation_after: bool = False
    coordinator: bool = False
    breaker: bool = False
    diminisher: bool = False
    intensifier: bool = False
    strong_intent: Intent | None = None
    weak_intent: Intent | None = None

    is_evidence: bool = False  # keyword, hint or fault cue: derived by `TermIndex`, read on the hot path


class Span(NamedTuple):
    """A run of tokens: a matched term, or a single unmatched token (`term` None).

    A NamedTuple, not a dataclass: one is built per token on the hot path.
    """

    text: str
    term: Term | None
    separator: bool  # punctuation, whitespace or emoji: ends a clause


_WORD_CHAR = re.compile(r"\w")
_LATIN_WORD_CHAR = re.compile(r"[A-Za-z0-9_]")


def _literal_pattern(key: str) -> re.Pattern[str]:
    """`key` as a literal, not glued to Latin letters or digits at an end that is itself Latin
    (the same word boundary the segmenter keeps for tokens)."""
    before = "(?<![A-Za-z0-9_])" if _LATIN_WORD_CHAR.match(key[0]) else ""
    after = "(?![A-Za-z0-9_])" if _LATIN_WORD_CHAR.match(key[-1]) else ""
    return re.compile(before + re.escape(key) + after)


class TermIndex:
    """Surface form → `Term`, built from a rule set plus the shipped lexicon."""

    def __init__(self, rules: RuleSet, lexicon: Lexicon) -> None:
        terms: dict[str, Term] = {}

        def add(surface: str, **roles: object) -> None:
            key = normalize(surface)
            if key:
                terms[key] = replace(terms.get(key, Term()), **roles)  # type: ignore[arg-type]

        for word in lexicon.protected_words:
            add(word)
        for cue in lexicon.fault_cues:
            add(cue, fault_cue=True)
        for role, words in (
            ("negation_before", lexicon.negation_before),
            ("negation_after", lexicon.negation_after),
            ("coordinator", lexicon.coordinators),
            ("breaker", lexicon.scope_breakers),
            ("diminisher", lexicon.diminishers),
            ("intensifier", lexicon.intensifiers),
        ):
            for word in words:
                add(word, **{role: True})
        for intent, cues in lexicon.intents.items():
            for word in cues.weak:
                add(word, weak_intent=intent)
            for word in cues.strong:
                add(word, strong_intent=intent)

        ordered = rules.by_precedence()
        # Weakest first, so the most preferred category overwrites: that is the precedence rule.
        for category in reversed(ordered):
            for hint in category.hints:
                add(hint, hint_category=category.name)
        owner: dict[str, tuple[str, str]] = {}  # normalised keyword -> (display keyword, category)
        for category in reversed(ordered):
            for keyword in category.keywords:
                owner[normalize(keyword)] = (keyword, category.name)
        # Synonyms first, then the keywords themselves: an admin's explicit keyword beats a
        # shipped synonym that happens to have the same spelling.
        for canonical, surfaces in lexicon.synonyms.items():
            if canonical in owner:
                keyword, category_name = owner[canonical]
                for surface in surfaces:
                    add(surface, keyword=keyword, category=category_name, fault_cue=False)
        for key, (keyword, category_name) in owner.items():
            add(key, keyword=keyword, category=category_name, fault_cue=False)

        # Strong conversational cues written in Chinese are found as substrings: jieba may glue
        # them into a longer word (增值税专用发票), and missing one could route a non-fault.
        self.strong_intent_of = {
            cue: intent
            for intent, cues in lexicon.intents.items()
            for cue in cues.strong
            if cue and all("\u4e00" <= ch <= "\u9fff" for ch in cue)
        }
        alternatives = sorted(self.strong_intent_of, key=len, reverse=True)
        self.strong_intent_pattern = re.compile("|".join(map(re.escape, alternatives)) or "(?!)")
        self.terms = {
            key: replace(t, is_evidence=t.category is not None or t.hint_category is not None or t.fault_cue)
            for key, t in terms.items()
        }
        self.max_length = max((len(k) for k in terms), default=1)
        # Keywords with punctuation or spaces ('; drop table, a.*b) may span more tokens than the
        # matcher joins; they are also looked up as literal substrings (escaped, never patterns),
        # whole Latin words only: c++ is not found in abc++.
        self.literal_keywords = tuple(
            (key, self.terms[key], _literal_pattern(key))
            for key in owner
            if any(not (ch.isalnum() or "\u4e00" <= ch <= "\u9fff") for ch in key)
        )
        self.noise_term = self._term_for_keyword(lexicon.noise_keyword, owner)
        self.code_term = self._term_for_keyword(lexicon.code_keyword, owner)

    @staticmethod
    def _term_for_keyword(keyword: str, owner: dict[str, tuple[str, str]]) -> Term | None:
        if keyword not in owner:
            return None  # the admin removed that keyword: noises/codes no longer count for it
        display, category = owner[keyword]
        return Term(keyword=display, category=category, is_evidence=True)

    def dictionary_words(self) -> Iterable[str]:
        """Surfaces to register with jieba so they come out as whole tokens."""
        return self.terms.keys()

    def spans(self, tokens: list[str]) -> list[Span]:
        """Greedy longest match of terms over runs of whole tokens."""
        terms = self.terms
        max_length = self.max_length
        result: list[Span] = []
        i = 0
        n = len(tokens)
        while i < n:
            best_end = 0
            best_term: Term | None = None
            best_text = ""
            joined = ""
            j = i
            while j < n and j - i < MAX_SPAN_TOKENS:
                joined += tokens[j]
                j += 1
                if len(joined) > max_length:
                    break
                term = terms.get(joined)
                if term is not None:
                    best_end, best_term, best_text = j, term, joined
            if best_term is None:
                token = tokens[i]
                result.append(Span(token, None, _WORD_CHAR.search(token) is None))
                i += 1
            else:
                result.append(Span(best_text, best_term, False))
                i = best_end
        return result
