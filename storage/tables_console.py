"""Tables of staff console (issue 22): sign-in links, sessions, saved views.

Imported by storage/tables.py so that they are on SQLModel.metadata; the migration 0012 creates them.
"""

from __future__ import annotations
