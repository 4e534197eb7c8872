"""What other capabilities must do when the organisation changes, without master data knowing them.

Master data sits below dispatch (docs/architecture.md), so it cannot call dispatch; dispatch registers
here instead (core/dispatch/release.py: a deactivated technician's open jobs go back to dispatch, the
technicians row follows the person). Whoever changes a person — `人员` in chat, the directory sync,
an import — saves nothing else and calls `person_changed` in the same unit of work.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from core.model import Person
from core.service import Context

# (ctx, the person before — None when new —, the person after); run in registration order.
PersonChanged = Callable[[Context, Person | None, Person], Awaitable[None]]
_PERSON_CHANGED: list[PersonChanged] = []


def on_person_changed(fn: PersonChanged) -> PersonChanged:
    if fn not in _PERSON_CHANGED:
        _PERSON_CHANGED.append(fn)
    return fn


async def person_changed(ctx: Context, before: Person | None, after: Person) -> None:
    """Tell every registered capability. A change: call it before writing the person row, so the
    tickets a hook locks come before the person (the lock order of core/timers.py: tickets, then other
    rows). A new person (`before` None, no tickets yet): add the row first, then call it (a hook may
    complete the row, e.g. the technicians row of a new technician)."""
    for hook in _PERSON_CHANGED:
        await hook(ctx, before, after)
