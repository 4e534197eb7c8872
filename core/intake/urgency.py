"""What a fault report says about priority and impact, from the text alone (seed 2's intake guard).

  * urgency: 紧急 / 加急 / 很急 … A customer who claims urgency without saying that production is
    affected is asked for a photo or the device number before the urgent priority is accepted
    (core/sla/tracking.py);
  * impact: a report that says the line or the plant stopped (产线停机, 整条线, 全厂停产 …) is
    全厂; one that says a whole department or team is affected (整个部门, 整个车间 …) is 部门;
  * consultation: the customer asks rather than reports (咨询, 请教, 怎么使用 …) and names no
    symptom and no stoppage: priority 咨询.
Negated mentions (不影响生产, 不是整个部门) do not count.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

URGENT = "紧急"
NORMAL = "常规"
CONSULT = "咨询"
DEPARTMENT = "部门"
PLANT = "全厂"

URGENT_WORDS = ("十万火急", "非常急", "紧急", "加急", "很急", "特急", "急需", "urgent", "asap")
PRODUCTION_WORDS = (
    "产线停机", "产线停了", "产线停", "生产线停", "停线", "停产", "全厂", "全线停", "整条线", "整条产线",
    "影响生产", "无法生产", "不能生产", "影响产线", "line down",
)
DEPARTMENT_WORDS = (
    "整个部门", "全部门", "部门所有", "部门里所有", "部门的人都", "整个科室", "全科室", "整个车间", "全车间",
    "整个办公室", "全办公室", "整层楼", "整个楼层", "整个班组", "全班组", "整个团队",
)
# Asking, not reporting. "请问" alone is politeness ("请问设备坏了怎么办" reports a fault).
CONSULT_WORDS = (
    "咨询", "请教", "想了解", "了解一下", "怎么使用", "如何使用", "使用方法", "怎么操作", "如何操作",
    "操作方法", "怎么设置", "如何设置", "设置方法",
)
_NEGATIONS = ("不", "没", "未", "无")  # "非常紧急" is urgent: 非 is no negation here
# Longer negations right before a word ("不影响整个部门"); a wider window of single characters
# would negate across a clause ("空调不制冷产线停了").
_NEGATED_BY = ("不影响", "没影响", "没有影响", "未影响", "不会影响", "并非")
DEVICE_NUMBER = re.compile(
    r"(?:设备|机台|资产|机器)(?:编号|号码|编码|号)\s*(?:是|为)?\s*[:：]?\s*([A-Za-z0-9][A-Za-z0-9\-_/.]{1,40})"
)


@dataclass(frozen=True, slots=True)
class Urgency:
    urgent: bool  # the customer claims urgency
    production: bool  # production / the whole plant is affected
    device_number: str | None  # a device number given in the text
    department: bool = False  # a whole department, workshop or team is affected
    consultation: bool = False  # the customer asks a question (how to use, how to set)

    @property
    def impact(self) -> str | None:
        """The impact the text states (全厂 before 部门); None: it says nothing (单用户)."""
        if self.production:
            return PLANT
        return DEPARTMENT if self.department else None


def _mentions(text: str, words: tuple[str, ...]) -> bool:
    lowered = text.casefold()
    for word in words:
        start = lowered.find(word)
        while start != -1:
            before = lowered[max(0, start - 2):start]
            if not any(n in before for n in _NEGATIONS) and not lowered[:start].endswith(_NEGATED_BY):
                return True
            start = lowered.find(word, start + 1)
    return False


def detect_urgency(text: str) -> Urgency:
    device = DEVICE_NUMBER.search(text)
    return Urgency(
        urgent=_mentions(text, URGENT_WORDS),
        production=_mentions(text, PRODUCTION_WORDS),
        device_number=device.group(1) if device else None,
        department=_mentions(text, DEPARTMENT_WORDS),
        consultation=_mentions(text, CONSULT_WORDS),
    )


def intake_priority(said: Urgency, *, symptom: bool) -> str:
    """The priority a report asks for. `symptom`: the classifier found a fault keyword in it.

    紧急 when urgency is claimed (the intake guard may still hold it at 常规 until there is
    evidence); 咨询 for a question that names no symptom and no stoppage; else 常规."""
    if said.urgent:
        return URGENT
    if said.consultation and not symptom and not said.production:
        return CONSULT
    return NORMAL
