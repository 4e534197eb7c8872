"""Transactions below the ORM: connection-level BEGIN … COMMIT, shared transactions and SQLite group commit.

Used on SQLite and PostgreSQL; imports storage.sqlite only (no tables, no core).
"""
