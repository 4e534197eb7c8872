"""The neutral card model.

Every adapter renders these into its platform's native card (WeCom template_card,
Feishu JSON 2.0 card, DingTalk interactive card, the playground's HTML). Nothing in
here may lean toward one platform: a card is a title, a few labelled facts, an
optional body, buttons, and optional input fields that are submitted together.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class CardKind(StrEnum):
    OFFER = "offer"  # dispatch offer to a technician: 接单 / 拒单
    ESCALATION = "escalation"  # to a supervisor: 确认 / 转派
    REMINDER = "reminder"  # strong reminder before a deadline
    SIGNOFF = "signoff"  # customer confirmation form
    STATUS = "status"  # ticket status for anyone
    SOP = "sop"  # standard operating procedure steps
    TASK = "task"  # a to-do (warehouse, root-cause analysis, callback)
    INFO = "info"  # anything else worth a card


class FieldKind(StrEnum):
    CHECKBOX = "checkbox"  # a single confirmation; value "true" when ticked
    SELECT = "select"  # one of `options`
    TEXT = "text"  # free text


class ActionStyle(StrEnum):
    PRIMARY = "primary"
    DEFAULT = "default"
    DANGER = "danger"


@dataclass(frozen=True, slots=True)
class FieldOption:
    value: str
    label: str


@dataclass(frozen=True, slots=True)
class CardField:
    """An input on a form card. Platforms do not enforce `required`: the server does."""

    id: str
    label: str
    kind: FieldKind
    options: tuple[FieldOption, ...] = ()
    required: bool = False
    placeholder: str = ""


@dataclass(frozen=True, slots=True)
class CardAction:
    """A button. When the card has fields, pressing it submits them."""

    id: str
    label: str
    style: ActionStyle = ActionStyle.DEFAULT


@dataclass(frozen=True, slots=True)
class Card:
    id: str  # unique card instance id; callbacks carry it back
    kind: CardKind
    title: str
    ticket_number: str | None = None
    facts: tuple[tuple[str, str], ...] = ()  # (label, value) lines
    body: str = ""  # plain text paragraph(s); adapters may render it as markdown
    actions: tuple[CardAction, ...] = ()
    fields: tuple[CardField, ...] = ()
    urgent: bool = False
    # Set when the card has been acted on: shown instead of the buttons.
    closed_note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind.value,
            "title": self.title,
            "ticket_number": self.ticket_number,
            "facts": [[k, v] for k, v in self.facts],
            "body": self.body,
            "actions": [{"id": a.id, "label": a.label, "style": a.style.value} for a in self.actions],
            "fields": [
                {
                    "id": f.id,
                    "label": f.label,
                    "kind": f.kind.value,
                    "options": [{"value": o.value, "label": o.label} for o in f.options],
                    "required": f.required,
                    "placeholder": f.placeholder,
                }
                for f in self.fields
            ],
            "urgent": self.urgent,
            "closed_note": self.closed_note,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Card:
        return cls(
            id=data["id"],
            kind=CardKind(data["kind"]),
            title=data["title"],
            ticket_number=data.get("ticket_number"),
            facts=tuple((k, v) for k, v in data.get("facts", [])),
            body=data.get("body", ""),
            actions=tuple(
                CardAction(a["id"], a["label"], ActionStyle(a.get("style", "default")))
                for a in data.get("actions", [])
            ),
            fields=tuple(
                CardField(
                    id=f["id"],
                    label=f["label"],
                    kind=FieldKind(f["kind"]),
                    options=tuple(FieldOption(o["value"], o["label"]) for o in f.get("options", [])),
                    required=f.get("required", False),
                    placeholder=f.get("placeholder", ""),
                )
                for f in data.get("fields", [])
            ),
            urgent=data.get("urgent", False),
            closed_note=data.get("closed_note"),
        )


@dataclass(frozen=True, slots=True)
class Notification:
    """Something the bot tells one person. Text, a card, or both.

    `replaces_card_id` marks an update of a card the person already has (after a
    button press); adapters use their platform's card-update mechanism for it.
    """

    recipient_id: str  # directory person id (not a platform id)
    text: str | None = None
    card: Card | None = None
    urgent: bool = False  # strong reminder: the most insistent delivery the platform has
    replaces_card_id: str | None = None
    ticket_number: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "recipient_id": self.recipient_id,
            "text": self.text,
            "card": self.card.to_dict() if self.card else None,
            "urgent": self.urgent,
            "replaces_card_id": self.replaces_card_id,
            "ticket_number": self.ticket_number,
            "extra": self.extra,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Notification:
        return cls(
            recipient_id=data["recipient_id"],
            text=data.get("text"),
            card=Card.from_dict(data["card"]) if data.get("card") else None,
            urgent=data.get("urgent", False),
            replaces_card_id=data.get("replaces_card_id"),
            ticket_number=data.get("ticket_number"),
            extra=data.get("extra") or {},
        )
