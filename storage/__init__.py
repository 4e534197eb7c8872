"""Persistence: sqlmodel tables, Alembic migrations, the unit of work, inbox and outbox."""
