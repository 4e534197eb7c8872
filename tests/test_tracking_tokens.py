"""bot/tracking_links.py's remembered tokens: the same token as made afresh, a new one after a revocation (the
generation is part of the key), and a bounded memory."""

from __future__ import annotations

from datetime import UTC, datetime

from bot.tracking_links import TOKENS_KEPT, TrackingLinks
from core.clock import FixedClock
from core.model import Ticket, TicketStatus

KEY = bytes(range(32))
NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


def links() -> TrackingLinks:
    def no_uow() -> None:
        raise AssertionError("making a token reads nothing")

    return TrackingLinks(KEY, base_url=lambda: "https://t.example", uow_factory=no_uow,  # type: ignore[arg-type]
                         clock=FixedClock(NOW), days_after_close=30)


def ticket(number: str, generation: int | None = None) -> Ticket:
    data = {} if generation is None else {"tracking": {"generation": generation}}
    return Ticket(number=number, customer_id="c", description="d", status=TicketStatus.PENDING_DISPATCH,
                  created_at=NOW, updated_at=NOW, data=data)


def test_a_remembered_token_is_the_token_made_afresh_and_a_revocation_changes_it() -> None:
    first, fresh = links(), links()
    t = ticket("GD-20261207-0001")
    remembered = first.token_for(t)
    assert first.token_for(t) == remembered == fresh.token_for(t)
    assert first.decode(remembered) == ("GD-20261207-0001", 0)
    t.data["tracking"] = {"generation": 1}  # what 链接 作废 does (core/tracking/revocation.py)
    revoked = first.token_for(t)
    assert revoked != remembered and revoked == fresh.token_for(ticket("GD-20261207-0001", 1))
    assert first.decode(revoked) == ("GD-20261207-0001", 1)
    assert not first.is_current(t, 0) and first.is_current(t, 1)


def test_the_remembered_tokens_are_bounded() -> None:
    made = links()
    tokens = {made.token_for(ticket(f"GD-20261207-{i:05d}")) for i in range(TOKENS_KEPT + 10)}
    assert len(tokens) == TOKENS_KEPT + 10  # every ticket its own token
    assert len(made._tokens) <= TOKENS_KEPT
    again = made.token_for(ticket("GD-20261207-00000"))  # forgotten when the memory was emptied: made again
    assert again == links().token_for(ticket("GD-20261207-00000"))
