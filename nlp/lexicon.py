"""Shipped language knowledge the classifier uses besides the admin rules.

Rules (`rules.py`) say which *keyword* belongs to which category; the lexicon says how
customers actually write those keywords (咔咔响 → 异响, 打不着 → 打不着火), how they negate
and soften them, and how non-fault chat (prices, invoices, thanks...) is phrased. Synonyms
point at keywords, so moving or removing a keyword in the rules moves or removes its
synonyms too.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from nlp.intents import Intent
from nlp.normalize import normalize


@dataclass(frozen=True, slots=True)
class IntentCues:
    strong: tuple[str, ...]  # win over fault words ("刹车异响，换片多少钱" is a price question)
    weak: tuple[str, ...]  # only decide when the message holds no fault at all ("空调不制冷，谢谢")


@dataclass(frozen=True, slots=True)
class Lexicon:
    synonyms: dict[str, tuple[str, ...]]  # keyword (normalised) -> surface forms (normalised)
    noise_chars: frozenset[str]  # onomatopoeia: a run of 2+ of these (咣当咣当, 咯吱咯吱) is a noise
    noise_keyword: str
    code_keyword: str
    code_pattern: re.Pattern[str]  # a whole token that is a fault code (p0300, u0100, e1)
    fault_cues: tuple[str, ...]  # "looks like a fault" without saying which kind (坏了, 有问题)
    negation_before: tuple[str, ...]
    negation_after: tuple[str, ...]
    coordinators: tuple[str, ...]  # carry a negation over to the next keyword (没有异响和漏油)
    scope_breakers: tuple[str, ...]  # end the reach of negation and degree words (就是, 但是)
    diminishers: tuple[str, ...]
    intensifiers: tuple[str, ...]
    protected_words: tuple[str, ...]  # words kept whole so their 不/没/响 is not read as a cue (不知道, 影响)
    intents: dict[Intent, IntentCues]


@cache
def default_lexicon() -> Lexicon:
    """The lexicon shipped in `nlp/lexicon.json` (parsed once per process)."""
    text = resources.files("nlp").joinpath("lexicon.json").read_text(encoding="utf-8")
    return lexicon_from_dict(json.loads(text))


def lexicon_from_dict(data: dict[str, Any]) -> Lexicon:
    def words(key: str) -> tuple[str, ...]:
        return tuple(normalize(w) for w in data.get(key, ()))

    intents = {
        Intent(name): IntentCues(
            strong=tuple(normalize(w) for w in cues.get("strong", ())),
            weak=tuple(normalize(w) for w in cues.get("weak", ())),
        )
        for name, cues in data.get("intents", {}).items()
    }
    return Lexicon(
        synonyms={normalize(k): tuple(normalize(v) for v in vs) for k, vs in data.get("synonyms", {}).items()},
        noise_chars=frozenset(data.get("noise_chars", "")),
        noise_keyword=normalize(data.get("noise_keyword", "异响")),
        code_keyword=normalize(data.get("code_keyword", "故障码")),
        code_pattern=re.compile(data.get("code_pattern", r"(?!)")),
        fault_cues=words("fault_cues"),
        negation_before=words("negation_before"),
        negation_after=words("negation_after"),
        coordinators=words("coordinators"),
        scope_breakers=words("scope_breakers"),
        diminishers=words("diminishers"),
        intensifiers=words("intensifiers"),
        protected_words=words("protected_words"),
        intents=intents,
    )
