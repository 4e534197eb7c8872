"""`规则 测试 <消息>`: classify one message under the current rules and, if the admin has a change
waiting for 确认, under the proposed rules too. Nothing is stored.

The plan (which rules) is read in a short transaction; the classifiers are built and run
after it, off the event loop, so the dictionary work never holds a database lock.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.rules.rulebook import RuleBook
from nlp.classifier import Classification, FaultClassifier, build_classifier
from nlp.intents import Intent
from nlp.rules import RuleSet

ECHO_LIMIT = 60
INTENT_LABELS = {
    Intent.UNKNOWN_FAULT: "像是故障，但规则无法分类 → 转人工分诊",
    Intent.GREETING: "问候（非故障）",
    Intent.THANKS: "致谢（非故障）",
    Intent.PRICE: "询价（非故障）",
    Intent.BOOKING: "预约（非故障）",
    Intent.INVOICE: "发票（非故障）",
    Intent.STATUS: "查进度（非故障）",
    Intent.SMALLTALK: "闲聊（非故障）",
    Intent.EMPTY: "空消息",
}


@dataclass(frozen=True, slots=True)
class DryRunPlan:
    current: RuleSet
    proposed: RuleSet | None = None  # the admin's pending change applied to `current`
    pending: str = ""  # what the pending change is (empty: none)
    problem: str = ""  # why the pending change no longer applies


async def render_dry_run(plan: DryRunPlan, text: str, live: RuleBook | None) -> str:
    lines = ["规则测试（不会修改规则）：", f"消息：{clip(text, ECHO_LIMIT)}", f"当前规则 v{plan.current.version}："]
    lines += describe_result((await _classifier(plan.current, live)).classify(text))
    if plan.problem:
        lines.append(f"待确认的修改（{plan.pending}）已无法应用：{plan.problem}")
    elif plan.proposed is not None:
        lines.append(f"待确认的修改（{plan.pending}）生效后：")
        lines += describe_result((await build_classifier(plan.proposed)).classify(text))
    return "\n".join(lines)


async def _classifier(rules: RuleSet, live: RuleBook | None) -> FaultClassifier:
    """The live classifier when it has these rules, else a fresh one built in a worker thread."""
    if live is not None and live.version == rules.version:
        await live.ready()
        return live.classifier
    return await build_classifier(rules)


def describe_result(result: Classification) -> list[str]:
    if result.category is not None:
        head = f"· 分类：{result.category}（得分 {result.score:g}）"
    else:
        head = f"· 分类：无 —— {INTENT_LABELS.get(result.intent, result.intent.value)}"
    lines = [head, f"· 命中关键词：{'、'.join(result.keywords) or '无'}"]
    if result.negated:
        lines.append(f"· 被否定的关键词：{'、'.join(result.negated)}")
    if result.hints:
        lines.append(f"· 部件词：{'、'.join(result.hints)}")
    if result.runner_up is not None:
        lines.append(f"· 次选：{result.runner_up[0]}（得分 {result.runner_up[1]:g}）")
    return lines


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + f"…（共 {len(text)} 字）"
