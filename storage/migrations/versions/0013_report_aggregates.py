"""report aggregates (issues 22, 24): ticket facts and per-day sums, kept by a background fold

New tables (storage/tables_reports.py): report_ticket_facts (one narrow row per ticket: what 报表 and
the dashboards count about it), report_day_counts (their sums per local day, store, category and
priority), report_day_waits and report_day_top_stays (per day and state: the waits' total and the ten
longest), report_fold_state (how far the fold got). Filled by bot/jobs/report_aggregates.py (a
backfill on the first run), never in the ticket's transaction.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06 22:00:00.000000
"""
import sqlalchemy as sa
import sqlmodel.sql.sqltypes  # the columns use sqlmodel.sql.sqltypes: imported by name so mypy sees it
from alembic import op

import storage.types

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('report_day_counts',
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('store_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('category', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('priority', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('reported', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('fr_n', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('fr_within', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('fr_skipped', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('acc_n', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('acc_within', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('acc_skipped', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('resp_met', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('resp_breached', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('res_met', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('res_breached', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('closed', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('ftf_failed', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('reworked', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('traceable', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('checked_in', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('photo3', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('signed', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('photos_sum', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('rating_sum', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('rating_n', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('closure_s', sa.BigInteger(), server_default='0', nullable=False),
    sa.PrimaryKeyConstraint('day', 'store_id', 'category', 'priority')
    )
    op.create_table('report_day_top_stays',
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('state', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('number', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('entered_at', storage.types.UtcDateTime(timezone=True), nullable=False),
    sa.Column('micros', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('day', 'state', 'number', 'entered_at')
    )
    op.create_table('report_day_waits',
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('state', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('stays', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('micros', sa.BigInteger(), server_default='0', nullable=False),
    sa.PrimaryKeyConstraint('day', 'state')
    )
    op.create_table('report_fold_state',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('backfill_next_id', sa.BigInteger(), nullable=True),
    sa.Column('backfill_until_id', sa.BigInteger(), nullable=True),
    sa.Column('steps', sa.BigInteger(), nullable=False),
    sa.Column('zone', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('folded_at', storage.types.UtcDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('report_ticket_facts',
    sa.Column('number', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('created_at', storage.types.UtcDateTime(timezone=True), nullable=False),
    sa.Column('created_day', sa.Date(), nullable=False),
    sa.Column('closed_at', storage.types.UtcDateTime(timezone=True), nullable=True),
    sa.Column('closed_day', sa.Date(), nullable=True),
    sa.Column('store_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('category', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('priority', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('assignee_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('is_open', sa.Boolean(), nullable=False),
    sa.Column('running', sa.Boolean(), nullable=False),
    sa.Column('first_response_s', sa.Integer(), nullable=True),
    sa.Column('accept_s', sa.Integer(), nullable=True),
    sa.Column('resp_present', sa.Boolean(), nullable=False),
    sa.Column('resp_due', storage.types.UtcDateTime(timezone=True), nullable=True),
    sa.Column('resp_met', sa.Boolean(), nullable=True),
    sa.Column('resp_met_at', sa.Boolean(), nullable=False),
    sa.Column('resp_breached', sa.Boolean(), nullable=False),
    sa.Column('resp_ack', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('res_present', sa.Boolean(), nullable=False),
    sa.Column('res_due', storage.types.UtcDateTime(timezone=True), nullable=True),
    sa.Column('res_met', sa.Boolean(), nullable=True),
    sa.Column('res_met_at', sa.Boolean(), nullable=False),
    sa.Column('res_breached', sa.Boolean(), nullable=False),
    sa.Column('res_ack', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('res_paused', sa.Boolean(), nullable=False),
    sa.Column('photos', sa.Integer(), nullable=False),
    sa.Column('checked_in', sa.Boolean(), nullable=False),
    sa.Column('signed', sa.Boolean(), nullable=False),
    sa.Column('confirmed', sa.Boolean(), nullable=False),
    sa.Column('rating', sa.Integer(), nullable=True),
    sa.Column('reworked', sa.Boolean(), nullable=False),
    sa.Column('came_back', sa.Boolean(), nullable=False),
    sa.Column('asset_key', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('ongoing_state', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
    sa.Column('ongoing_since', storage.types.UtcDateTime(timezone=True), nullable=True),
    sa.Column('stays', sa.JSON(), nullable=False),
    sa.Column('root_causes', sa.JSON(), nullable=False),
    sa.Column('rca_pending', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('number')
    )
    op.create_index('ix_report_facts_asset', 'report_ticket_facts', ['asset_key', 'category', 'created_at'])
    op.create_index('ix_report_facts_assignee', 'report_ticket_facts', ['assignee_id', 'created_day'])
    op.create_index('ix_report_facts_closed', 'report_ticket_facts', ['closed_day', 'store_id', 'category',
                                                                             'assignee_id', 'rating', 'photos'])
    op.create_index('ix_report_facts_created', 'report_ticket_facts', ['created_day', 'store_id', 'category'])
    op.create_index('ix_report_facts_rca', 'report_ticket_facts', ['rca_pending', 'is_open'])
    op.create_index('ix_report_facts_open', 'report_ticket_facts', ['is_open', 'created_day'])
    op.create_index('ix_report_facts_running', 'report_ticket_facts', ['running', 'created_day'])
    op.create_index('ix_report_facts_waits', 'report_ticket_facts', ['created_day', 'first_response_s', 'accept_s'])


def downgrade() -> None:
    op.drop_index('ix_report_facts_waits', table_name='report_ticket_facts')
    op.drop_index('ix_report_facts_running', table_name='report_ticket_facts')
    op.drop_index('ix_report_facts_rca', table_name='report_ticket_facts')
    op.drop_index('ix_report_facts_open', table_name='report_ticket_facts')
    op.drop_index('ix_report_facts_created', table_name='report_ticket_facts')
    op.drop_index('ix_report_facts_closed', table_name='report_ticket_facts')
    op.drop_index('ix_report_facts_assignee', table_name='report_ticket_facts')
    op.drop_index('ix_report_facts_asset', table_name='report_ticket_facts')
    op.drop_table('report_ticket_facts')
    op.drop_table('report_fold_state')
    op.drop_table('report_day_waits')
    op.drop_table('report_day_top_stays')
    op.drop_table('report_day_counts')
