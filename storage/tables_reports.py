"""Tables of report aggregates (issues 22, 24): per-day counts kept in the ticket's transaction.

Imported by storage/tables.py so that they are on SQLModel.metadata; the migration 0013 creates them.
"""

from __future__ import annotations
