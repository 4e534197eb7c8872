"""微信客服 (issue 21): sync cursors, per-customer message budget, contact-way cache

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 22:00:00.000000
"""
from alembic import op  # noqa: F401

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
