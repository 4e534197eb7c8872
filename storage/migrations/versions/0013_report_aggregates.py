"""report aggregates (issues 22, 24): per-day counts kept in the ticket's transaction

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06 22:00:00.000000
"""
from alembic import op  # noqa: F401

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
