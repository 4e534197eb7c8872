"""What the core needs from a fault classifier (nlp/ provides it)."""

from __future__ import annotations

from typing import Protocol


class FaultAnalysis(Protocol):
    category: str | None  # None: not a routable fault
    intent: str  # fault, greeting, thanks, price, booking, invoice, status, smalltalk, empty, unknown_fault
    keywords: list[str] | tuple[str, ...]
    negated: list[str] | tuple[str, ...]
    score: float


class FaultClassifierPort(Protocol):
    def classify(self, text: str) -> FaultAnalysis: ...
