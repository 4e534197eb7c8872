"""Latin terms match whole words only: `error` is not found inside `onerror`, `hi` not inside `nothing`.

Chinese has no spaces, so a Chinese character next to a Latin word is a boundary (OBD报错,
发动机error); a Latin letter, digit or underscore next to it is not.
"""

from __future__ import annotations

import pytest

from nlp import FaultClassifier, Intent, default_rules
from nlp.rule_changes import AddKeywords, apply_change


@pytest.fixture(scope="module")
def classifier() -> FaultClassifier:
    return FaultClassifier(default_rules()).warm()


@pytest.mark.parametrize("text", [
    "<img src=x onerror=alert(1)>",  # was an 电控类 ticket: "error" → 报错
    "terror attack",
    "on_error handler",
    "errors",
])
def test_latin_keyword_inside_a_word_is_not_a_fault(classifier: FaultClassifier, text: str) -> None:
    result = classifier.classify(text)
    assert result.category is None, result.to_json_dict()
    assert result.intent is not Intent.FAULT
    assert "报错" not in result.keywords


@pytest.mark.parametrize("text", ["nothing", "chinese", "this is it", "hijack"])
def test_latin_greeting_inside_a_word_is_not_a_greeting(classifier: FaultClassifier, text: str) -> None:
    assert classifier.classify(text).intent is not Intent.GREETING


@pytest.mark.parametrize(("text", "category", "keywords"), [
    ("ECU error", "电控类", ("ECU", "报错")),
    ("ecu ERROR!", "电控类", ("ECU", "报错")),
    ("OBD报错", "电控类", ("OBD", "报错")),
    ("发动机error", "电控类", ("报错",)),
    ("error: 123", "电控类", ("报错",)),
    ("ABS灯亮了", "电控类", ("故障灯",)),
    ("engine light on", "电控类", ("发动机故障灯",)),
    ("(error)", "电控类", ("报错",)),
])
def test_whole_latin_words_still_match(classifier: FaultClassifier, text: str, category: str,
                                       keywords: tuple[str, ...]) -> None:
    result = classifier.classify(text)
    assert result.category == category, result.to_json_dict()
    for keyword in keywords:
        assert keyword in result.keywords, result.to_json_dict()


@pytest.mark.parametrize("text", ["显示err1", "仪表出现P0300", "报警E1"])
def test_codes_next_to_latin_keywords_are_still_codes(classifier: FaultClassifier, text: str) -> None:
    """`err1` is one word: a fault code (故障码), not `err` + `1`."""
    result = classifier.classify(text)
    assert result.category == "电控类" and "故障码" in result.keywords, result.to_json_dict()


def test_admin_literal_keywords_respect_latin_word_boundaries() -> None:
    rules = apply_change(default_rules(), AddKeywords("电控类", ("c++", "x.y"))).rules
    classifier = FaultClassifier(rules).warm()
    assert classifier.classify("屏幕显示c++").category == "电控类"
    assert classifier.classify("x.y 报出来了").category == "电控类"
    assert classifier.classify("abc++").category is None
    assert classifier.classify("x.yz").category is None
