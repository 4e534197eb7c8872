"""Tables of tracking pages (issue 21): capability tokens and their revocation.

Imported by storage/tables.py so that they are on SQLModel.metadata; the migration 0011 creates them.
"""

from __future__ import annotations
