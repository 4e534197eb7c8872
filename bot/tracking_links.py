"""Tracking links (issue 21): `runtime.tracking.url_for(ticket)` → `PUBLIC_BASE_URL/t/<token>`, and
`await runtime.tracking.resolve(token)` → the ticket, or None for a forged, revoked or expired token.

The token is stateless: AES-SIV (deterministic authenticated encryption, RFC 5297) of the ticket number and
the ticket's link generation, base64url, ~44 characters. Nothing is stored per link and nothing is read to
make one (every notification carries it, the intake path included); resolving reads the ticket row by its
unique number, which it has to read anyway. Deterministic: one ticket has one URL per generation, the same in
every message and every process.

* Unguessable and unforgeable: without the key a token neither decrypts nor can be made; the ticket number is
  not visible in it.
* Revocable: `链接 作废 号` (core/tracking/revocation.py) bumps `ticket.data["tracking"]["generation"]`;
  older tokens stop resolving everywhere at once.
* Expiring: a closed ticket's link works TRACKING_LINK_DAYS_AFTER_CLOSE days after `closed_at`.

Key: derived from the audit key (AUDIT_KEY or DATA_DIR/audit.key, bot/audit_key.py) as
HMAC-SHA256(audit key, "ticketbot/tracking-link/v1"): every process of a deployment already shares that key
(the chain would not verify otherwise), so links made by a worker open on any web process; no second secret
to distribute or back up. Rotating the audit key invalidates the links (customers get new ones with the next
message).
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from core.audit.chain import AuditKey
from core.model import Ticket
from core.ports import Clock
from core.tracking import link_generation

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESSIV

    from core.service import TicketService
    from storage.unit_of_work import SqlUnitOfWork

KEY_CONTEXT = b"ticketbot/tracking-link/v1"
TOKEN_VERSION = 1
MAX_TOKEN_CHARS = 120  # a real token has ~44; longer input is not even decoded
PATH_PREFIX = "/t/"
NONCE_LIFETIME_S = 6 * 3600  # a sign-off form left open this long is reloaded first
TOKENS_KEPT = 4096  # tokens remembered (see token_for)


def tracking_key(audit_key: AuditKey) -> bytes:
    """32 bytes (AES-128-SIV's two keys) derived from the audit key: one block of HKDF-Expand's construction."""
    return bytes.fromhex(audit_key.mac_bytes(KEY_CONTEXT))


class TrackingLinks:
    """The core's TrackingLinkPort, and the resolver the customer pages use."""

    def __init__(self, key: bytes, *, base_url: Callable[[], str], uow_factory: Callable[[], SqlUnitOfWork],
                 clock: Clock, days_after_close: float) -> None:
        self._key = key
        self._cipher: AESSIV | None = None  # built at first use: see _siv
        self._tokens: dict[tuple[str, int], str] = {}  # (number, generation) → token, see token_for
        self._nonce_key = hmac.digest(key, b"page-nonce", "sha256")
        self._base_url = base_url  # read at each call: the web app learns its bind after the runtime is built
        self._uow_factory = uow_factory
        self._clock = clock
        self.valid_after_close = timedelta(days=days_after_close)

    @property
    def _siv(self) -> AESSIV:
        """`cryptography` (~6 MB of RSS) is imported when the first link is made or opened, not at start-up:
        a process that never sends a customer a message (a worker idling, the CLI) never loads it (issue 24:
        idle RSS)."""
        if self._cipher is None:
            from cryptography.hazmat.primitives.ciphers.aead import AESSIV

            self._cipher = AESSIV(self._key)
        return self._cipher

    # --- making links ---
    def token_for(self, ticket: Ticket) -> str:
        # The token is deterministic and every message to the ticket's customer carries it (at intake, 1.5 per
        # ticket on average in bench/intake.py): remembered, not encrypted again. Bounded: emptied when full.
        generation = link_generation(ticket)
        key = (ticket.number, generation)
        token = self._tokens.get(key)
        if token is None:
            plain = bytes((TOKEN_VERSION,)) + generation.to_bytes(4, "big") + ticket.number.encode("utf-8")
            token = base64.urlsafe_b64encode(self._siv.encrypt(plain, None)).rstrip(b"=").decode("ascii")
            if len(self._tokens) >= TOKENS_KEPT:
                self._tokens.clear()
            self._tokens[key] = token
        return token

    def url_for(self, ticket: Ticket) -> str:
        return f"{self._base_url().rstrip('/')}{PATH_PREFIX}{self.token_for(ticket)}"

    # --- per-page nonces (forms on the customer pages) ---
    def page_nonce(self, token: str, purpose: str, now: datetime | None = None) -> str:
        """A nonce for a form on the page of `token`: the time it was issued and a MAC over it."""
        issued = int((now or self._clock.now()).timestamp())
        return f"{issued}.{self._nonce_mac(token, purpose, issued)}"

    def check_nonce(self, nonce: str, token: str, purpose: str, now: datetime | None = None) -> bool:
        issued_text, _, mac = (nonce or "").partition(".")
        if not issued_text.isdigit() or len(issued_text) > 12:
            return False
        issued = int(issued_text)
        age = (now or self._clock.now()).timestamp() - issued
        return 0 <= age + 60 <= NONCE_LIFETIME_S + 60 and hmac.compare_digest(
            mac, self._nonce_mac(token, purpose, issued))

    def _nonce_mac(self, token: str, purpose: str, issued: int) -> str:
        return hmac.digest(self._nonce_key, f"{token}|{purpose}|{issued}".encode(), "sha256").hex()[:32]

    # --- resolving them ---
    def decode(self, token: str) -> tuple[str, int] | None:
        """(ticket number, generation) of an authentic token; None for anything else."""
        if not token or len(token) > MAX_TOKEN_CHARS or not token.isascii():
            return None
        from cryptography.exceptions import InvalidTag

        try:
            sealed = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            plain = self._siv.decrypt(sealed, None)
        except (InvalidTag, binascii.Error, ValueError):
            return None
        if len(plain) < 6 or plain[0] != TOKEN_VERSION:
            return None
        try:
            number = plain[5:].decode("utf-8")
        except UnicodeDecodeError:
            return None
        return number, int.from_bytes(plain[1:5], "big")

    def is_current(self, ticket: Ticket, generation: int, now: datetime | None = None) -> bool:
        """Not revoked (the generation is the ticket's) and not expired (closed less than the setting ago)."""
        if generation != link_generation(ticket):
            return False
        if ticket.status.is_open:
            return True
        # Closed: from closed_at; cancelled (no closed_at): from its last change, the cancellation.
        ended = ticket.closed_at or ticket.updated_at
        return (now or self._clock.now()) < ended + self.valid_after_close

    async def resolve(self, token: str) -> Ticket | None:
        decoded = self.decode(token)
        if decoded is None:
            return None
        number, generation = decoded
        async with self._uow_factory() as uow:
            ticket = await uow.get_ticket(number)
        if ticket is None or not self.is_current(ticket, generation):
            return None
        return ticket


def attach_tracking(service: TicketService, audit_key: AuditKey, *, base_url: Callable[[], str],
                    uow_factory: Callable[[], SqlUnitOfWork], clock: Clock, days_after_close: float) -> TrackingLinks:
    """Build the links and hand them to the core: from now on every notification to a ticket's customer
    about that ticket carries its URL (core/service.py Context.notify)."""
    links = TrackingLinks(tracking_key(audit_key), base_url=base_url, uow_factory=uow_factory, clock=clock,
                          days_after_close=days_after_close)
    service.config.tracking = links
    return links
