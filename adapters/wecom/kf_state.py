"""What the 微信客服 adapter keeps durably, as a port (storage/kf_store.py implements it).

- Sync cursors per account, saved with optimistic versioning: two syncers (two processes, or a
  re-sent callback) never move a cursor backwards; the inbox dedupes what both pulled.
- The per-customer budget: after a customer's message the service may send 5 messages in 48 h.
  `take` books atomically in the database, so every process shares one count.
- Notices held while the budget is spent (and no SMS), sent with the customer's next message.
- The contact-way URL per store, asked from WeCom once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

BUDGET_MESSAGES = 5
BUDGET_WINDOW_S = 48 * 3600

# Plain tuples: storage implements this port without importing adapters (same layer).
SavedCursor = tuple[str, int]  # (cursor, version); ("", 0) before the first sync
HeldNotice = tuple[int, str, str | None]  # (id, text, ticket number)


class KfState(Protocol):
    async def cursor(self, open_kfid: str) -> SavedCursor: ...

    async def save_cursor(self, open_kfid: str, seen: SavedCursor, cursor: str) -> SavedCursor | None:
        """Store `cursor` if the saved one is still `seen`; None when another syncer moved it."""
        ...

    async def customers_spoke(self, spoken: dict[str, tuple[datetime, str]]) -> set[str]:
        """Messages from customers (external id → (when, msgid)): a fresh window of BUDGET_MESSAGES
        each when newer than theirs (same second: another msgid). One transaction for a whole page.
        Returns those with held notices."""
        ...

    async def take(self, external_id: str, now: datetime) -> int | None:
        """Book one message: the messages left after it, or None when the window is spent or
        closed (nothing booked)."""
        ...

    async def spend(self, external_id: str) -> None:
        """WeCom says the budget is spent (95001): count it spent until the customer writes again."""
        ...

    async def remaining(self, external_id: str, now: datetime) -> int: ...

    async def hold(self, external_id: str, text: str, ticket_number: str | None, now: datetime) -> None: ...

    async def take_held(self, external_id: str) -> list[HeldNotice]:
        """Remove and return the held notices, oldest first."""
        ...

    async def first_time(self, msgid: str, now: datetime) -> bool:
        """True the first time a msgid answered outside the inbox is seen."""
        ...

    async def contact_way(self, store_code: str) -> str | None: ...

    async def save_contact_way(self, store_code: str, open_kfid: str, url: str, now: datetime) -> None: ...
