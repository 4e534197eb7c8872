"""Tables of SMS and the store report page (issue 21): phone codes, per-phone and per-IP limits.

Imported by storage/tables.py so that they are on SQLModel.metadata; the migration 0010 creates them.
"""

from __future__ import annotations
