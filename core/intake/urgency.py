"""What a fault report says about urgency (seed 2's intake guard), from the text alone.

A customer who writes 紧急 / 加急 / 很急 without saying that production is affected is asked
for a photo or the device number before the urgent priority is accepted; a report that says the
line stopped (产线停机, 停产, 影响生产 …) is plant-wide. Negated mentions (不影响生产) do not count.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

URGENT_WORDS = ("十万火急", "非常急", "紧急", "加急", "很急", "特急", "急需", "urgent", "asap")
PRODUCTION_WORDS = (
    "产线停机", "产线停了", "产线停", "生产线停", "停线", "停产", "全厂", "全线停", "整条线", "影响生产",
    "无法生产", "不能生产", "影响产线", "line down",
)
_NEGATIONS = ("不", "没", "未", "无")  # "非常紧急" is urgent: 非 is no negation here
DEVICE_NUMBER = re.compile(
    r"(?:设备|机台|资产|机器)(?:编号|号码|编码|号)\s*(?:是|为)?\s*[:：]?\s*([A-Za-z0-9][A-Za-z0-9\-_/.]{1,40})"
)


@dataclass(frozen=True, slots=True)
class Urgency:
    urgent: bool  # the customer claims urgency
    production: bool  # production / the whole plant is affected
    device_number: str | None  # a device number given in the text


def _mentions(text: str, words: tuple[str, ...]) -> bool:
    lowered = text.casefold()
    for word in words:
        start = lowered.find(word)
        while start != -1:
            before = lowered[max(0, start - 2):start]
            if not any(n in before for n in _NEGATIONS):
                return True
            start = lowered.find(word, start + 1)
    return False


def detect_urgency(text: str) -> Urgency:
    device = DEVICE_NUMBER.search(text)
    return Urgency(
        urgent=_mentions(text, URGENT_WORDS),
        production=_mentions(text, PRODUCTION_WORDS),
        device_number=device.group(1) if device else None,
    )
