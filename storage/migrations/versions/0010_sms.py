"""SMS and the store report page (issue 21): phone codes, per-phone and per-IP limits

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 22:00:00.000000
"""
from alembic import op  # noqa: F401

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
