"""Who may use the console, and which stores each person sees (docs/console.md "Roles and scope").

- admin, quality, expert: every store (they work across the organisation).
- supervisor: their own store (people.store_id) plus the stores of the active people they supervise
  (people.supervisor_id = them) — the demo's 主管 李强 (S01) supervises technicians at S02, so he sees both.
- front_desk, warehouse: their own store.
- A store-scoped person for whom the organisation names no store at all sees every store, as
  core/masterdata/org.py's last resort does for escalations: a service without master data keeps working.
- technicians and customers: no console (technicians work in the chat; their tickets come to them).
Tickets without a store are visible only to people who see every store.
"""

from __future__ import annotations

from bot.chat.console_link import CONSOLE_ROLES
from core.model import Person, Role
from storage.console_store import ConsoleStore

__all__ = ["ALL_STORE_ROLES", "CONSOLE_ROLES", "may_use_console", "stores_of"]
ALL_STORE_ROLES = frozenset({Role.ADMIN, Role.QUALITY, Role.EXPERT})


def may_use_console(person: Person) -> bool:
    return person.active and person.role in CONSOLE_ROLES


async def stores_of(person: Person, store: ConsoleStore) -> frozenset[str] | None:
    """None: every store; else the stores `person` may see."""
    if person.role in ALL_STORE_ROLES:
        return None
    stores = {person.store_id} if person.store_id else set()
    if person.role is Role.SUPERVISOR:
        stores |= await store.supervised_stores(person.id)
    return frozenset(stores) if stores else None
