"""Which audit key a database's chain is written and checked with.

The composition root loads the key (bot/audit_key.py: AUDIT_KEY, or DATA_DIR/audit.key) and binds it
to the engine it builds (`bind_audit_key`), so every unit of work on that engine uses it without each
caller passing it along. Commands that build their own engine (the CLI's) run inside
`audit_key_provider(...)`, which `ticketbot`'s entry point sets up, and get the key from there.

Code that set up neither (a library use, a unit test of the storage alone) gets a key made up for this
process, with a warning: its events do not verify in any other process, which `ticketbot audit verify`
reports. Nothing ever falls back to an unkeyed chain.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING
from weakref import WeakKeyDictionary

from core.audit.chain import AuditKey

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger(__name__)

_bound: WeakKeyDictionary[AsyncEngine, AuditKey] = WeakKeyDictionary()
_provider: ContextVar[Callable[[], AuditKey] | None] = ContextVar("audit_key_provider", default=None)
_process_key: list[AuditKey] = []  # the made-up key, once made


def bind_audit_key(engine: AsyncEngine, key: AuditKey) -> None:
    _bound[engine] = key


@contextmanager
def audit_key_provider(provider: Callable[[], AuditKey]) -> Iterator[None]:
    """Engines without a bound key get one from `provider` (called at most once, when first needed)."""
    loaded: list[AuditKey] = []

    def once() -> AuditKey:
        if not loaded:
            loaded.append(provider())
        return loaded[0]

    token = _provider.set(once)
    try:
        yield
    finally:
        _provider.reset(token)


def audit_key_for(engine: AsyncEngine) -> AuditKey:
    key = _bound.get(engine)
    if key is not None:
        return key
    provider = _provider.get()
    if provider is not None:
        key = _bound[engine] = provider()
        return key
    if not _process_key:
        log.warning("no audit key configured in this process: using a temporary one; the audit events it "
                    "writes will not verify elsewhere (the service and `ticketbot` load AUDIT_KEY)")
        _process_key.append(AuditKey(secrets.token_bytes(32)))
    return _process_key[0]
