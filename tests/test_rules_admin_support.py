"""Shared drivers for the rule-admin tests (no tests here)."""

from __future__ import annotations

import re
from typing import Any

from aiohttp.test_utils import TestClient
from sqlalchemy import select

from bot.rules.rulebook import RULES_KIND
from core.model import Person, Role, Ticket
from storage.tables import AuditEventRow
from tests.conftest import runtime_of
from tests.playground_client import PlaygroundUser

NUMBER = re.compile(r"GD-\d{8}-\d{4}")


async def rule_versions(client: TestClient) -> list[dict[str, Any]]:
    """Stored rule versions, oldest first."""
    async with runtime_of(client).uow() as uow:
        return list(reversed(await uow.config_history(RULES_KIND, limit=1000)))


async def rule_payload(client: TestClient, version: int) -> dict[str, Any]:
    async with runtime_of(client).uow() as uow:
        payload = await uow.config_version(RULES_KIND, version)
    assert payload is not None
    return payload


async def audit_events(client: TestClient, kind: str) -> list[AuditEventRow]:
    async with runtime_of(client).sessions() as session:
        rows = (await session.execute(
            select(AuditEventRow).where(AuditEventRow.kind == kind).order_by(AuditEventRow.seq)  # type: ignore[arg-type]
        )).scalars()
        return list(rows)


def classify(client: TestClient, text: str) -> Any:
    return runtime_of(client).rulebook.classify(text)


async def report(client: TestClient, customer: str, text: str) -> Ticket:
    user = PlaygroundUser(client, customer)
    await user.say(text)
    match = NUMBER.search(await user.last_text())
    assert match, await user.texts()
    async with runtime_of(client).uow() as uow:
        ticket = await uow.get_ticket(match.group(0))
    assert ticket is not None
    return ticket


async def add_admin(client: TestClient, person_id: str, name: str) -> PlaygroundUser:
    async with runtime_of(client).uow() as uow:
        await uow.add_person(Person(id=person_id, name=name, role=Role.ADMIN), {"local": person_id})
        await uow.commit()
    return PlaygroundUser(client, person_id)
