"""SQLite driver tuning: inline sqlite3 calls on the loop, prepared hot statements, WAL checkpoints.

Relies on SQLAlchemy internals (compiled bind names and processors, the aiosqlite adapter), checked against
SQLAlchemy 2.1.9 and aiosqlite 0.22.1 (pyproject.toml pins SQLAlchemy below 2.2); guarded by
tests/test_sqlite_inline.py, test_sqlite_prepared.py, test_sqlite_session.py and test_wal_checkpoint.py.
Re-run them on any SQLAlchemy upgrade. Imports nothing else of ticketbot.
"""
