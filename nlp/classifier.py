"""Fault classification: normalise → jieba tokens → term spans → scope (negation, degree) → decision.

Start-up: `FaultClassifier(rules)` is cheap (builds the term index in a few ms). The jieba
dictionary (~0.5-1 s the first time in a process, ~20 ms after) loads on `warm()` or on the
first `classify()`. In async code build it with `await build_classifier(rules)`, which warms
in a worker thread so the event loop never waits for the dictionary. A rule change means a
new classifier: build it in the background and swap the reference when it is warm.

Decision, in order:
1. blank text → intent `empty`;
2. a strong conversational cue (进度, 发票, 多少钱, 预约) → that intent, never a category:
   "刹车异响，换片多少钱" is a price question about a known part, not a new fault report;
3. non-negated keywords → the category with the highest score (ties: precedence);
4. a generic fault cue (坏了, 有问题) but no category → `unknown_fault` (triage queue);
5. weak cues (谢谢, 你好) → thanks / greeting / ...; otherwise `smalltalk`.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from typing import Any

from nlp.intents import Intent
from nlp.lexicon import Lexicon, default_lexicon
from nlp.normalize import normalize
from nlp.rules import RuleSet
from nlp.segmenter import Segmenter
from nlp.term_index import Span, TermIndex

MAX_CLASSIFIED_CHARS = 2000  # a pasted log or novel is judged on its start; keeps cost bounded
KEYWORD_WEIGHT = 1.0
HINT_WEIGHT = 0.5  # component words (刹车, 屏幕) only tip the balance or place a vague fault
HINT_CAP = 0.5  # several component words never outweigh one real symptom
DIMINISH_FACTOR = 0.5  # 有点响
INTENSIFY_FACTOR = 1.5  # 主要是黑屏, 异响很严重
SCOPE_REACH = 4  # spans a negation or degree word reaches across

_STRONG_ORDER = (Intent.STATUS, Intent.INVOICE, Intent.PRICE, Intent.BOOKING)
_WEAK_ORDER = (Intent.THANKS, Intent.GREETING, Intent.STATUS, Intent.INVOICE, Intent.PRICE, Intent.BOOKING)


@dataclass(frozen=True, slots=True)
class Evidence:
    """One matched term, for explaining a result."""

    surface: str  # as written (normalised)
    keyword: str | None  # rule keyword it stands for; None for hints and generic fault cues
    category: str | None
    kind: str  # "keyword", "hint" or "fault_cue"
    negated: bool
    weight: float  # contribution to the category score (0 when negated)

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "surface": self.surface,
            "keyword": self.keyword,
            "category": self.category,
            "kind": self.kind,
            "negated": self.negated,
            "weight": round(self.weight, 3),
        }


@dataclass(frozen=True, slots=True)
class Classification:
    text: str  # the original message
    category: str | None  # None: not a routable fault (see `intent`)
    intent: Intent
    keywords: tuple[str, ...]  # rule keywords found, not negated, in order of appearance
    negated: tuple[str, ...]  # rule keywords found but negated (没有异响, 不漏油了)
    score: float  # score of `category` (0.0 when None)
    runner_up: tuple[str, float] | None  # next best category; when `category` is None, the best one that lost
    hints: tuple[str, ...] = ()
    evidence: tuple[Evidence, ...] = field(default=())
    rules_version: int = 0
    truncated: bool = False  # only the first MAX_CLASSIFIED_CHARS characters were read

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "category": self.category,
            "intent": self.intent.value,
            "keywords": list(self.keywords),
            "negated": list(self.negated),
            "score": round(self.score, 3),
            "runner_up": None
            if self.runner_up is None
            else {"category": self.runner_up[0], "score": round(self.runner_up[1], 3)},
            "hints": list(self.hints),
            "evidence": [e.to_json_dict() for e in self.evidence],
            "rules_version": self.rules_version,
            "truncated": self.truncated,
        }


class FaultClassifier:
    """Classifies customer messages with one immutable `RuleSet`. Thread-safe once warm."""

    def __init__(self, rules: RuleSet, lexicon: Lexicon | None = None) -> None:
        self.rules = rules
        self.lexicon = lexicon or default_lexicon()
        self._index = TermIndex(rules, self.lexicon)
        self._segmenter = Segmenter(self._index.dictionary_words())
        self._precedence = {c.name: c.precedence for c in rules.categories}
        self._noise_token = re.compile("[" + re.escape("".join(sorted(self.lexicon.noise_chars))) + "]+")

    def warm(self) -> FaultClassifier:
        """Load jieba's dictionary and this rule set's terms now. Blocking: run it off the event loop."""
        self._segmenter.warm()
        return self

    @property
    def warmed(self) -> bool:
        return self._segmenter.warmed

    def classify(self, text: str) -> Classification:
        truncated = len(text) > MAX_CLASSIFIED_CHARS
        normalised = normalize(text[:MAX_CLASSIFIED_CHARS] if truncated else text)
        if not normalised:
            return Classification(text, None, Intent.EMPTY, (), (), 0.0, None, rules_version=self.rules.version)
        spans = self._mark_noises_and_codes(self._index.spans(self._segmenter.cut(normalised)))
        if self._index.literal_keywords:
            spans = self._add_literal_keywords(normalised, spans)
        strong = {self._index.strong_intent_of[m] for m in self._index.strong_intent_pattern.findall(normalised)}
        return self._decide(text, spans, strong, truncated)

    def _mark_noises_and_codes(self, spans: list[Span]) -> list[Span]:
        """Turn onomatopoeia runs (咣当咣当, 咯吱咯吱) into 异响 and code tokens (p0300, e1) into 故障码."""
        noise_term, code_term = self._index.noise_term, self._index.code_term
        noise, code = self._noise_token, self.lexicon.code_pattern
        result: list[Span] = []
        run = ""
        for span in spans:
            if span.term is None and not span.separator:
                if noise_term is not None and noise.fullmatch(span.text):
                    run += span.text
                    continue
                if code_term is not None and span.text[0].isascii() and code.match(span.text):
                    span = Span(span.text, code_term, False)
            if run:
                result.append(Span(run, noise_term if len(run) >= 2 else None, False))
                run = ""
            result.append(span)
        if run:
            result.append(Span(run, noise_term if len(run) >= 2 else None, False))
        return result

    def _add_literal_keywords(self, normalised: str, spans: list[Span]) -> list[Span]:
        """Substring hits of punctuation-bearing admin keywords the token matcher did not see."""
        found = {span.text for span in spans if span.term is not None}
        extra = [
            span
            for key, term, pattern in self._index.literal_keywords
            if key not in found and key in normalised and pattern.search(normalised)
            for span in (Span(" ", None, True), Span(key, term, False))  # own clause: no negation reaches it
        ]
        return spans + extra if extra else spans

    def _decide(self, text: str, spans: list[Span], strong: set[Intent], truncated: bool) -> Classification:
        evidence: list[Evidence] = []
        negated_at: dict[int, bool] = {}
        scores: dict[str, float] = {}
        hint_scores: dict[str, float] = {}
        weak: set[Intent] = set()
        fault_cue = False
        for i, span in enumerate(spans):
            term = span.term
            if term is None:
                continue
            if term.strong_intent is not None:
                strong.add(term.strong_intent)
            if term.weak_intent is not None:
                weak.add(term.weak_intent)
            if not term.is_evidence:
                continue
            negated, factor = self._scope(spans, i, negated_at)
            negated_at[i] = negated
            if term.category is not None:
                weight = 0.0 if negated else KEYWORD_WEIGHT * factor
                scores[term.category] = scores.get(term.category, 0.0) + weight
                evidence.append(Evidence(span.text, term.keyword, term.category, "keyword", negated, weight))
            elif term.hint_category is not None:
                evidence.append(Evidence(span.text, None, term.hint_category, "hint", negated, 0.0))
                if not negated:
                    hint_scores[term.hint_category] = HINT_WEIGHT
            else:
                evidence.append(Evidence(span.text, None, None, "fault_cue", negated, 0.0))
                fault_cue = fault_cue or not negated

        if hint_scores and (fault_cue or any(scores.values())):
            # Component words count only once the message already reads as a fault.
            for hinted, weight in hint_scores.items():
                scores[hinted] = scores.get(hinted, 0.0) + min(weight, HINT_CAP)
            evidence = [
                Evidence(e.surface, e.keyword, e.category, e.kind, e.negated, HINT_WEIGHT)
                if e.kind == "hint" and not e.negated
                else e
                for e in evidence
            ]
        ranked = sorted(
            ((c, s) for c, s in scores.items() if s > 0), key=lambda cs: (-cs[1], self._precedence.get(cs[0], 1 << 30))
        )
        keywords = _unique(e.keyword for e in evidence if e.kind == "keyword" and not e.negated)
        negated_keywords = _unique(e.keyword for e in evidence if e.kind == "keyword" and e.negated)
        hints = _unique(e.surface for e in evidence if e.kind == "hint" and not e.negated)

        intent = next((i for i in _STRONG_ORDER if i in strong), None)
        if intent is None:
            if ranked:
                intent = Intent.FAULT
            elif fault_cue:
                intent = Intent.UNKNOWN_FAULT
            else:
                intent = next((i for i in _WEAK_ORDER if i in weak), Intent.SMALLTALK)

        category: str | None = None
        score = 0.0
        if intent is Intent.FAULT:
            category, score = ranked[0]
            runner_up = ranked[1] if len(ranked) > 1 else None
        else:
            runner_up = ranked[0] if ranked else None
        return Classification(
            text=text,
            category=category,
            intent=intent,
            keywords=keywords,
            negated=negated_keywords,
            score=score,
            runner_up=runner_up,
            hints=hints,
            evidence=tuple(evidence),
            rules_version=self.rules.version,
            truncated=truncated,
        )

    def _scope(self, spans: list[Span], i: int, negated_at: dict[int, bool]) -> tuple[bool, float]:
        """Whether span `i` is negated, and its degree factor, from the words around it in its clause."""
        factor = 1.0
        negated = False
        only_coordinators = True
        for j in range(i - 1, max(-1, i - 1 - SCOPE_REACH), -1):
            before = spans[j]
            term = before.term
            if term is not None and term.coordinator:
                continue
            if before.separator or (term is not None and term.breaker):
                break
            if term is not None and term.is_evidence:
                # "没有异响和漏油": a negation carries over a coordinator, never across a plain keyword.
                negated = only_coordinators and j < i - 1 and negated_at.get(j, False)
                break
            if term is not None and term.negation_before:
                negated = True
                break
            if term is not None and term.diminisher:
                factor *= DIMINISH_FACTOR
            if term is not None and term.intensifier:
                factor *= INTENSIFY_FACTOR
            only_coordinators = False
        for j in range(i + 1, min(len(spans), i + 1 + SCOPE_REACH)):
            after = spans[j]
            term = after.term
            if after.separator:
                break
            if term is None:
                continue
            if term.negation_after:
                negated = True
                break
            if term.intensifier:
                factor *= INTENSIFY_FACTOR
            if term.breaker or term.is_evidence:
                break
        return negated, factor


async def build_classifier(rules: RuleSet, lexicon: Lexicon | None = None) -> FaultClassifier:
    """Build and warm a classifier in a worker thread, so the event loop is never blocked by jieba."""
    return await asyncio.to_thread(lambda: FaultClassifier(rules, lexicon).warm())


def _unique(items: Any) -> tuple[str, ...]:
    return tuple(dict.fromkeys(i for i in items if i is not None))
