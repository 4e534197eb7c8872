"""DATABASE_URL may name PostgreSQL's Unix socket folder (a server on the same host; docs/operations.md):
the service's engine connects through the socket and runs a unit of work as over TCP."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from core.model import Person, Role
from storage.database import create_engine, session_factory
from storage.unit_of_work import SqlUnitOfWork
from tests.conftest import service_missing

SOCKET_FOLDER = Path("/var/run/postgresql")


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_a_socket_url_connects_through_the_socket(database_url: str) -> None:
    tcp = make_url(database_url)
    if not (SOCKET_FOLDER / f".s.PGSQL.{tcp.port or 5432}").exists():
        service_missing(f"PostgreSQL's socket in {SOCKET_FOLDER}")
    url = f"postgresql://{tcp.username}@/{tcp.database}?host={SOCKET_FOLDER}&port={tcp.port or 5432}"
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            # inet_server_addr() is NULL on a Unix-socket connection
            assert (await conn.execute(text("SELECT inet_server_addr() IS NULL"))).scalar_one() is True
        sessions = session_factory(engine)
        async with SqlUnitOfWork(sessions) as uow:
            await uow.add_person(Person(id="sock-1", name="套接字", role=Role.CUSTOMER))
            await uow.append_audit(kind="socket_test", actor_id="sock-1", at=datetime.now(UTC), payload={},
                                   ticket_number=None)
            await uow.commit()
        async with SqlUnitOfWork(sessions) as uow:
            found = await uow.get_person("sock-1")
            assert found is not None and found.name == "套接字"
    finally:
        await engine.dispose()

