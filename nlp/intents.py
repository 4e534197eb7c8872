"""What a message is about, as far as routing cares."""

from __future__ import annotations

from enum import StrEnum


class Intent(StrEnum):
    FAULT = "fault"  # a fault placed in a category
    UNKNOWN_FAULT = "unknown_fault"  # looks like a fault, no rule places it: goes to the triage queue
    GREETING = "greeting"
    THANKS = "thanks"
    PRICE = "price"
    BOOKING = "booking"
    INVOICE = "invoice"
    STATUS = "status"
    SMALLTALK = "smalltalk"
    EMPTY = "empty"


NON_FAULT_INTENTS = frozenset(Intent) - {Intent.FAULT, Intent.UNKNOWN_FAULT}
