"""tracking pages (issue 21): no schema change — tracking links are stateless (bot/tracking_links.py)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 22:00:00.000000
"""
from alembic import op  # noqa: F401

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
