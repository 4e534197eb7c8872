"""first responses found by time (issue 24): ix_tickets_first_response_at, report_fold_state.responses_checked_at

A first response is set on the ticket row when the answer is delivered, without an audit event, so the
report fold re-checked every ticket of the last 3 days still without one — on every fold step and every
报表 (its live part): O(the backlog of unanswered tickets). With this index the fold reads only the first
responses set since its last check (`responses_checked_at`, minus a margin for transactions still open);
the 3-day full check remains for when that is unknown (a new fold state, a backfill).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07 08:00:00.000000
"""
import sqlalchemy as sa
from alembic import op

import storage.types

revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('report_fold_state', schema=None) as batch_op:
        batch_op.add_column(sa.Column('responses_checked_at', storage.types.UtcDateTime(timezone=True), nullable=True))
    op.create_index('ix_tickets_first_response_at', 'tickets', ['first_response_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_tickets_first_response_at', table_name='tickets')
    with op.batch_alter_table('report_fold_state', schema=None) as batch_op:
        batch_op.drop_column('responses_checked_at')
