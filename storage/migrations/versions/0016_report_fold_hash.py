"""the report fold's watermark with its hash (issues 20, 24): report_fold_state.seq_hash

On SQLite the report aggregates are in a file of their own beside the database (storage/report_store.py),
which can outlive a restored backup of the database or sit beside another one. The fold keeps the hash of
the audit event at its watermark: aggregates of another chain are told apart and folded again
(storage/report_aggregates.py `of_this_chain`). Nullable: a state folded before is trusted as it was.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07 21:40:00.000000
"""
import sqlalchemy as sa
import sqlmodel.sql.sqltypes  # imported by name so mypy sees it
from alembic import op

revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('report_fold_state', schema=None) as batch_op:
        batch_op.add_column(sa.Column('seq_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('report_fold_state', schema=None) as batch_op:
        batch_op.drop_column('seq_hash')
