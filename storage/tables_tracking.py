"""Tables of tracking pages (issue 21): none.

Tracking links are stateless capabilities (bot/tracking_links.py: authenticated encryption of the ticket
number and its link generation); revoking one bumps `ticket.data["tracking"]["generation"]` on the ticket
itself. Nothing per link is stored, so this module defines no table and migration 0011 is empty (kept so the
revision chain stays as numbered).
"""

from __future__ import annotations
