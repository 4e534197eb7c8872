"""Classifier quality on the labelled corpora, tricky cases one by one, and bad input."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from nlp.classifier import MAX_CLASSIFIED_CHARS, FaultClassifier, build_classifier
from nlp.intents import NON_FAULT_INTENTS, Intent
from nlp.rule_changes import AddCategory, AddKeywords, DeleteCategory, RemoveKeywords, apply_change
from nlp.rules import CategoryRule, RuleSet, default_rules

DATA = Path(__file__).parent / "data"
FAULT_CATEGORIES = {"机械类", "电控类"}


def load_corpus(name: str) -> list[tuple[str, str]]:
    rows = []
    for line in (DATA / name).read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            label, text = line.split("\t", 1)
            assert label in FAULT_CATEGORIES or label in {i.value for i in Intent}, label
            rows.append((label, text))
    return rows


@pytest.fixture(scope="module")
def classifier() -> FaultClassifier:
    return FaultClassifier(default_rules()).warm()


def routing_report(classifier: FaultClassifier, rows: list[tuple[str, str]]) -> tuple[float, list[str], list[str]]:
    misses, leaks = [], []
    for label, text in rows:
        result = classifier.classify(text)
        expected = label if label in FAULT_CATEGORIES else None
        if result.category != expected:
            misses.append(f"{label} -> {result.category}/{result.intent}: {text}")
        if expected is None and result.category is not None:
            leaks.append(text)
    return 1 - len(misses) / len(rows), misses, leaks


@pytest.mark.parametrize(("corpus", "minimum"), [("nlp_corpus.tsv", 0.97), ("nlp_corpus_holdout.tsv", 0.95)])
def test_corpus_accuracy_and_no_non_fault_routed(classifier: FaultClassifier, corpus: str, minimum: float) -> None:
    rows = load_corpus(corpus)
    assert len(rows) >= (250 if corpus == "nlp_corpus.tsv" else 100)
    accuracy, misses, leaks = routing_report(classifier, rows)
    assert leaks == [], f"non-fault messages routed into a fault category: {leaks}"
    assert accuracy >= minimum, f"accuracy {accuracy:.3f} < {minimum}; misses:\n" + "\n".join(misses)


def test_corpus_covers_every_kind_of_message() -> None:
    labels = {label for label, _ in load_corpus("nlp_corpus.tsv")}
    assert labels >= FAULT_CATEGORIES | {i.value for i in NON_FAULT_INTENTS - {Intent.EMPTY}} | {"unknown_fault"}


def test_intent_accuracy_on_tuning_corpus(classifier: FaultClassifier) -> None:
    rows = load_corpus("nlp_corpus.tsv")
    wrong = [
        (label, classifier.classify(text).intent.value, text)
        for label, text in rows
        if (classifier.classify(text).intent.value != label) and label not in FAULT_CATEGORIES
    ]
    assert len(wrong) / len(rows) <= 0.03, wrong


@pytest.mark.parametrize(
    ("text", "category"),
    [
        ("没有异响，就是黑屏", "电控类"),
        ("空调压缩机有异响", "机械类"),
        ("空调控制面板黑屏", "电控类"),
        ("师傅我车一脚油门下去咔咔响", "机械类"),
        ("车子过坑咣当咣当的响", "机械类"),
        ("变速箱渗油", "机械类"),
        ("打不着火了", "电控类"),
        ("屏幕不亮", "电控类"),
        ("方向盤抖動", "机械类"),
        ("ＯＢＤ读到Ｕ０１００", "电控类"),
        ("故障码P0300", "电控类"),
        ("空调显示E1", "电控类"),
        ("仪表盘亮了个发动机灯", "电控类"),
        ("洗衣机脱水的时候晃得厉害", "机械类"),
        ("电梯门关不上", "机械类"),
        ("一开空调就跳闸", "电控类"),
        ("不漏油了，现在是启动不了", "电控类"),
        ("故障灯没亮，但是有异响", "机械类"),
        ("有点响，主要是黑屏开不了机", "电控类"),
        ("刷抖音的时候车机黑屏", "电控类"),
    ],
)
def test_tricky_fault_messages(classifier: FaultClassifier, text: str, category: str) -> None:
    result = classifier.classify(text)
    assert result.category == category, result.to_json_dict()
    assert result.intent is Intent.FAULT


@pytest.mark.parametrize(
    ("text", "negated"),
    [("不漏油了", "漏油"), ("已经不抖了", "抖动"), ("异响没了", "异响"), ("没有异响和漏油", "漏油")],
)
def test_negated_only_messages_are_not_faults(classifier: FaultClassifier, text: str, negated: str) -> None:
    result = classifier.classify(text)
    assert result.category is None
    assert negated in result.negated
    assert result.keywords == ()


def test_negation_is_reported_alongside_the_winning_keyword(classifier: FaultClassifier) -> None:
    result = classifier.classify("没有异响，就是黑屏")
    assert result.keywords == ("黑屏",)
    assert result.negated == ("异响",)
    assert result.runner_up is None


def test_negation_does_not_reach_across_then(classifier: FaultClassifier) -> None:
    # 没 … 就: "not long before it shook" is a fault, not a negated one.
    assert classifier.classify("没开多久就抖得厉害").category == "机械类"
    assert classifier.classify("不知道为什么一直抖").category == "机械类"


def test_keywords_do_not_fire_inside_other_words(classifier: FaultClassifier) -> None:
    # 响 inside 影响/音响, 抖 inside 抖音 are not noises or vibrations.
    for text in ("这会影响我明天用车吗", "抖音上看到你们的", "音响的牌子是什么"):
        result = classifier.classify(text)
        assert result.category is None and result.keywords == (), (text, result.to_json_dict())


@pytest.mark.parametrize(
    ("text", "intent"),
    [
        ("你好", Intent.GREETING),
        ("谢谢师傅", Intent.THANKS),
        ("换个机油多少钱", Intent.PRICE),
        ("刹车有点异响，换片多少钱", Intent.PRICE),
        ("预约明天修刹车异响", Intent.BOOKING),
        ("开发票", Intent.INVOICE),
        ("麻烦开个增值税专用发票", Intent.INVOICE),
        ("上次报的异响修好了吗", Intent.STATUS),
        ("我的工单", Intent.STATUS),
        ("好的", Intent.SMALLTALK),
        ("冰箱坏了", Intent.UNKNOWN_FAULT),
        ("", Intent.EMPTY),
        ("   \n\t　", Intent.EMPTY),
    ],
)
def test_non_fault_messages_never_get_a_category(classifier: FaultClassifier, text: str, intent: Intent) -> None:
    result = classifier.classify(text)
    assert result.intent is intent, result.to_json_dict()
    assert result.category is None
    assert result.score == 0.0


def test_fault_with_a_polite_ending_is_still_a_fault(classifier: FaultClassifier) -> None:
    result = classifier.classify("你好，空调不制冷了，麻烦尽快来看看，谢谢")
    assert (result.category, result.intent) == ("机械类", Intent.FAULT)


def test_explanation_has_score_and_runner_up(classifier: FaultClassifier) -> None:
    result = classifier.classify("发动机异响还漏油，故障灯也亮了")
    assert result.category == "机械类"
    assert result.keywords == ("异响", "漏油", "故障灯")
    assert result.score > result.runner_up[1] > 0
    assert result.runner_up[0] == "电控类"


def test_json_dict_is_serialisable_and_complete(classifier: FaultClassifier) -> None:
    data = json.loads(json.dumps(classifier.classify("没有异响，就是黑屏").to_json_dict(), ensure_ascii=False))
    assert {"text", "category", "keywords", "negated", "score", "intent", "runner_up"} <= data.keys()
    assert data["text"] == "没有异响，就是黑屏"
    assert data["category"] == "电控类"
    assert data["intent"] == "fault"
    assert data["negated"] == ["异响"]
    assert json.loads(json.dumps(classifier.classify("你好").to_json_dict()))["category"] is None


@pytest.mark.parametrize(
    "text",
    ["😀😀😀", "🙏", "'; DROP TABLE tickets; --", ".*+?[](){}|\\^$", "%s %d {0} ${x}", "\x00\x01", "a" * 10_000],
)
def test_bad_input_gives_a_plain_non_fault_answer(classifier: FaultClassifier, text: str) -> None:
    result = classifier.classify(text)
    assert result.category is None
    assert result.intent is Intent.SMALLTALK
    json.dumps(result.to_json_dict())


def test_ten_thousand_characters_are_classified_quickly_and_marked_truncated(classifier: FaultClassifier) -> None:
    text = "师傅，车子开起来方向盘一直抖，" * 700
    assert len(text) > MAX_CLASSIFIED_CHARS
    started = time.perf_counter()
    result = classifier.classify(text)
    assert time.perf_counter() - started < 2.0  # generous: a sanity bound, the real figure is in bench/
    assert result.category == "机械类"
    assert result.truncated
    assert result.text == text


def test_mixed_english(classifier: FaultClassifier) -> None:
    assert classifier.classify("check engine灯亮了").category == "电控类"
    assert classifier.classify("My car 有异响").category == "机械类"
    assert classifier.classify("hello").intent is Intent.GREETING


def test_admin_keyword_with_metacharacters_matches_literally() -> None:
    rules = apply_change(default_rules(), AddKeywords("电控类", ("a.*b", "c++", "'; DROP TABLE x--"))).rules
    classifier = FaultClassifier(rules)
    result = classifier.classify("屏幕上出现'; drop table x--")
    assert (result.category, result.keywords) == ("电控类", ("'; DROP TABLE x--",))
    assert classifier.classify("drop table x").category is None
    assert classifier.classify("屏幕显示a.*b").category == "电控类"
    assert classifier.classify("屏幕显示axxb").keywords == ()
    assert classifier.classify("报c++").category == "电控类"


def test_new_keyword_takes_effect_in_a_new_classifier_and_old_one_is_unchanged() -> None:
    old = FaultClassifier(default_rules())
    assert old.classify("机器呲溜了").category is None
    rules = apply_change(default_rules(), AddKeywords("机械类", ("呲溜",))).rules
    new = FaultClassifier(rules)
    result = new.classify("机器呲溜了")
    assert result.category == "机械类" and result.keywords == ("呲溜",)
    assert result.rules_version == default_rules().version + 1
    assert old.classify("机器呲溜了").category is None


def test_removed_keyword_takes_its_synonyms_with_it() -> None:
    rules = apply_change(default_rules(), RemoveKeywords("机械类", ("漏油",))).rules
    classifier = FaultClassifier(rules)
    assert FaultClassifier(default_rules()).classify("变速箱渗油").keywords == ("漏油",)
    assert "漏油" not in classifier.classify("变速箱渗油").keywords


def test_new_category_does_not_steal_clear_cases() -> None:
    rules = apply_change(default_rules(), AddCategory("制冷类")).rules
    rules = apply_change(rules, AddKeywords("制冷类", ("漏氟", "缺氟", "不制冷"))).rules
    classifier = FaultClassifier(rules)
    assert classifier.classify("空调压缩机有异响").category == "机械类"
    assert classifier.classify("空调控制面板黑屏").category == "电控类"
    assert classifier.classify("空调不制冷").category == "机械类"  # 不制冷 stays with the higher-precedence owner
    assert classifier.classify("空调漏氟了").category == "制冷类"  # an admin keyword beats a shipped synonym


def test_tie_is_broken_by_precedence() -> None:
    rules = RuleSet(
        1,
        (
            CategoryRule("甲类", ("咔嚓",), precedence=2),
            CategoryRule("乙类", ("嘀嘀",), precedence=1),
        ),
    )
    result = FaultClassifier(rules).classify("咔嚓，嘀嘀")
    assert result.category == "乙类"
    assert result.runner_up == ("甲类", 1.0)


def test_deleting_a_category_removes_its_routing() -> None:
    rules = apply_change(default_rules(), DeleteCategory("电控类")).rules
    result = FaultClassifier(rules).classify("黑屏了")
    assert result.category is None


def test_constructor_is_cheap_and_build_classifier_keeps_the_event_loop_responsive() -> None:
    started = time.perf_counter()
    classifier = FaultClassifier(default_rules())
    assert time.perf_counter() - started < 1.0
    assert not classifier.warmed

    async def run() -> tuple[FaultClassifier, float]:
        worst = 0.0
        done = False

        async def probe() -> None:
            nonlocal worst
            while not done:
                tick = time.perf_counter()
                await asyncio.sleep(0.005)
                worst = max(worst, time.perf_counter() - tick)

        task = asyncio.create_task(probe())
        built = await build_classifier(default_rules())
        done = True
        await task
        return built, worst

    built, worst = asyncio.run(run())
    assert built.warmed
    assert worst < 1.0
    assert built.classify("黑屏").category == "电控类"


def test_classify_warms_lazily() -> None:
    classifier = FaultClassifier(default_rules())
    assert classifier.classify("漏油").category == "机械类"
    assert classifier.warmed


def test_classifier_does_not_touch_global_jieba() -> None:
    import jieba

    FaultClassifier(default_rules()).warm()
    assert "发动机故障灯" not in jieba.dt.FREQ or jieba.dt.FREQ.get("发动机故障灯", 0) == 0
