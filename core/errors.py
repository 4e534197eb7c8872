"""Domain errors. One root; every error carries data and a Chinese message for users."""

from __future__ import annotations

from typing import Any


class TicketbotError(Exception):
    """Root of every error the core raises on purpose.

    `user_message` is safe to show to the person who caused it (Chinese).
    """

    def __init__(self, user_message: str, **data: Any) -> None:
        super().__init__(user_message)
        self.user_message = user_message
        self.data = data


class NotFound(TicketbotError):
    pass


class NotAllowed(TicketbotError):
    """The actor may not do this (wrong role, not the assignee, not the customer)."""


class IllegalTransition(TicketbotError):
    """The state machine refuses this move; nothing was changed."""


class InvalidInput(TicketbotError):
    """The input is malformed or incomplete (missing confirmation, bad rating...)."""


class Conflict(TicketbotError):
    """Someone else got there first (double accept, card already used)."""


class StaleRead(Conflict):
    """What this command read changed before it could write (two admins saving at once).

    Its transaction rolled back whole, so `TicketService.handle` runs the command again on
    the data as it is now; only when that keeps failing does the user see the message."""


class DeliveryError(Exception):
    """Root of outbound delivery failures raised by channel senders."""

    def __init__(self, reason: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after_s = retry_after_s


class DeliveryRetryLater(DeliveryError):
    """Transient: rate limited, 5xx, token failure. The outbox retries with backoff."""


class DeliveryRejected(DeliveryError):
    """Permanent: the platform will never accept this delivery. Logged, not retried."""


class CalendarError(InvalidInput):
    """Bad calendar input: a naive datetime, inverted hours, an unknown zone."""
