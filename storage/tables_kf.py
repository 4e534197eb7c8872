"""Tables of 微信客服 (issue 21): sync cursors, per-customer message budget, contact-way cache.

Imported by storage/tables.py so that they are on SQLModel.metadata; the migration 0009 creates them.
"""

from __future__ import annotations
