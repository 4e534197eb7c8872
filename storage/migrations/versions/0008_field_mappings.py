"""field mappings per connected system (issue 23)

Empty on purpose: a system's field mapping is a versioned configuration like the others, stored in
config_versions (kind `fieldmap:<hash of the client name>`, core/hub/mappings.py), which already
gives history, diff and rollback. The revision stays so the numbering of later migrations holds.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 19:35:00.000000
"""
from alembic import op  # noqa: F401

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
