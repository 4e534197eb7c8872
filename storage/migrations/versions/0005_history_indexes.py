"""history indexes for reports, dispatch and audit verification at a million tickets

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06 18:40:00.000000

报表 reads the status trail of the period's tickets (`ticket_number` with `kind`) and the tickets
closed in a window (`closed_at`); the dispatch index reads the acceptances since a time (`kind` with
`at`). With only the single-column indexes each of these read most of the table (issue 24). The
retention purge reads cancelled tickets by the day they ended (`status` with `updated_at`).
"""
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_audit_events_ticket_kind', 'audit_events', ['ticket_number', 'kind'], unique=False)
    op.create_index('ix_audit_events_kind_at', 'audit_events', ['kind', 'at'], unique=False)
    op.create_index('ix_tickets_closed_at', 'tickets', ['closed_at'], unique=False)
    op.create_index('ix_tickets_status_updated', 'tickets', ['status', 'updated_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_tickets_status_updated', table_name='tickets')
    op.drop_index('ix_tickets_closed_at', table_name='tickets')
    op.drop_index('ix_audit_events_kind_at', table_name='audit_events')
    op.drop_index('ix_audit_events_ticket_kind', table_name='audit_events')
