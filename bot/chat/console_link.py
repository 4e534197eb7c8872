"""`后台`: a one-time sign-in link to the staff console (issue 22; being written)."""

from __future__ import annotations
