"""Per-person aggregation of reminders: at most one immediate message and one digest per window.

WeCom silently drops more than 30 messages a minute to one member (and Feishu allows 5 QPS per
user), so a burst of SLA reminders, CCs and nags to one person must not become a burst of
messages. The throttle lives here, where the reminders are produced, and not in the outbox:
only the producer knows which messages may be merged (buttons on escalation cards may not).

Leading edge + trailing digest, with a durable timer as the window:
  * no open window for the person → deliver at once and open a window (a "digest" timer due in
    `digest_window`, with an empty item list in its payload);
  * a window is open → append the item to the timer's payload (nothing is sent now);
  * the window closes (the timer fires) → if items piled up, send them as ONE message and open
    a new window; otherwise the window just closes.
So a person gets ≤ 2 reminder messages per window however many reminders fall due.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from core.cards import Card, CardKind
from core.model import Ticket
from core.service import Context
from core.timers import timer_handler

DIGEST_KIND = "digest.reminders"
MAX_ITEMS = 50  # a digest lists at most this many items; the rest are counted


@dataclass(frozen=True, slots=True)
class ReminderItem:
    title: str
    text: str
    ticket_number: str | None = None
    urgent: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {"title": self.title, "text": self.text, "ticket": self.ticket_number, "urgent": self.urgent}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReminderItem:
        return cls(str(data["title"]), str(data["text"]), data.get("ticket"), bool(data.get("urgent", True)))


def digest_key(person_id: str) -> str:
    """The timer's ticket key for a person ("@" + id; hashed when too long for the column)."""
    key = "@" + person_id
    return key if len(key) <= 64 else "@" + hashlib.sha256(person_id.encode()).hexdigest()[:40]


async def remind(ctx: Context, person_id: str, item: ReminderItem) -> bool:
    """Queue a reminder for a person. True when it was delivered at once, False when merged."""
    key = digest_key(person_id)
    window = ctx.config.sla.digest_window
    timer = await ctx.uow.get_timer(DIGEST_KIND, key, lock=True)
    if timer is None or timer.state != "pending" or not window:
        await _deliver(ctx, person_id, [item], extra=0)
        if window:
            await ctx.uow.schedule_timer(kind=DIGEST_KIND, ticket_number=key, due_at=ctx.now + window,
                                         payload={"person": person_id, "items": [], "extra": 0})
        return True
    items = list(timer.payload.get("items", []))
    extra = int(timer.payload.get("extra", 0))
    if len(items) < MAX_ITEMS:
        items.append(item.to_dict())
    else:
        extra += 1
    await ctx.uow.schedule_timer(kind=DIGEST_KIND, ticket_number=key, due_at=timer.due_at,
                                 payload={"person": person_id, "items": items, "extra": extra})
    return False


@timer_handler(DIGEST_KIND)
async def _close_window(ctx: Context, _ticket: Ticket | None, payload: dict[str, Any]) -> None:
    items = [ReminderItem.from_dict(i) for i in payload.get("items", [])]
    if not items:
        return  # quiet window: it just closes
    person_id = str(payload["person"])
    await _deliver(ctx, person_id, items, extra=int(payload.get("extra", 0)))
    await ctx.uow.schedule_timer(kind=DIGEST_KIND, ticket_number=digest_key(person_id),
                                 due_at=ctx.now + ctx.config.sla.digest_window,
                                 payload={"person": person_id, "items": [], "extra": 0})


async def _deliver(ctx: Context, person_id: str, items: list[ReminderItem], *, extra: int) -> None:
    urgent = any(i.urgent for i in items)
    if len(items) == 1 and not extra:
        item = items[0]
        card = Card(id=ctx.new_card_id("remind"), kind=CardKind.REMINDER, title=item.title,
                    ticket_number=item.ticket_number, body=item.text, urgent=urgent)
    else:
        lines = [f"{n}. {i.title}：{i.text}" for n, i in enumerate(items, 1)]
        if extra:
            lines.append(f"……另有 {extra} 条提醒未列出，请发送「我的工单」查看。")
        numbers = {i.ticket_number for i in items}
        card = Card(id=ctx.new_card_id("remind"), kind=CardKind.REMINDER,
                    title=f"SLA 提醒汇总（{len(items) + extra} 条）",
                    ticket_number=numbers.pop() if len(numbers) == 1 else None, body="\n".join(lines), urgent=urgent)
    await ctx.send_card(person_id, card)
