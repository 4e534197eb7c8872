"""report aggregates at the grains the questions ask (issues 22, 24): report_day_rollups

report_day_counts summed over all but one dimension — every store together ("all"), per store, per
category — per local day and priority (storage/tables_reports.py), so that a 30-day 报表 or dashboard
reads ≤ 30 × values × 3 small rows instead of up to 30 × stores × categories × priorities; per-day
histograms of the waits (exact, and in 30 s / 1 h buckets) and of photos × rating, and per-day
technicians' closed tickets and ratings, for the unfiltered questions. Filled here
from report_day_counts (the same sums, exact), then kept by the fold with it. Also: the open facts'
index covers the open tickets' reads (backlog, breaches, ongoing stays) and is partial (open ones only),
indexes for one store's / one category's period, and `longest_stay` (the longest completed stay, filled
here from the stays) so that a filtered TOP10 reads the stays of ≤ 10 tickets.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07 01:00:00.000000
"""
import sqlalchemy as sa
import sqlmodel.sql.sqltypes  # the columns use sqlmodel.sql.sqltypes: imported by name so mypy sees it
from alembic import op

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None

OPEN_COLUMNS = ('is_open', 'created_day', 'store_id', 'category', 'assignee_id', 'status', 'created_at', 'number',
                'ongoing_state', 'ongoing_since', 'ongoing_since_us', 'resp_present', 'resp_met_at', 'resp_due',
                'resp_breached', 'resp_ack',
                'res_present', 'res_met_at', 'res_due', 'res_breached', 'res_ack', 'res_paused')
NONE_X = -(2**31)  # storage/report_aggregates.py NONE_X: "no value yet"; the buckets: wait_bucket there
COUNTERS = ('reported', 'fr_n', 'fr_within', 'fr_skipped', 'acc_n', 'acc_within', 'acc_skipped', 'resp_met',
            'resp_breached', 'res_met', 'res_breached', 'closed', 'ftf_failed', 'reworked', 'traceable',
            'checked_in', 'photo3', 'signed', 'photos_sum', 'rating_sum', 'rating_n', 'closure_s')


def fill_statements() -> list[str]:
    """The new tables' rows from the 0013 ones: the sums the fold keeps (storage/report_aggregates.py
    rollup_rows, value_keys, Deltas.technicians), exact; tests/test_report_aggregates.py compares them."""
    columns = ', '.join(COUNTERS)
    sums = ', '.join(f'SUM({name})' for name in COUNTERS)
    out = []
    for dim, value in (('all', "''"), ('store', 'store_id'), ('category', 'category')):
        group = 'day, priority' if dim == 'all' else f'day, {value}, priority'
        out.append(f"INSERT INTO report_day_rollups (dim, day, value, priority, {columns}) "
                   f"SELECT '{dim}', day, {value}, priority, {sums} FROM report_day_counts GROUP BY {group}")
    for kind, column in (('fr', 'first_response_s'), ('acc', 'accept_s')):
        exact = f"COALESCE({column}, {NONE_X})"
        bucket = (f"CASE WHEN {column} IS NULL THEN {NONE_X} WHEN {column} <= 0 THEN 0 "
                  f"WHEN {column} <= 3600 THEN ({column} + 29) / 30 ELSE 121 + ({column} - 3601) / 3600 END")
        for name, x in ((kind, exact), (kind + 'b', bucket)):
            out.append(f"INSERT INTO report_day_values (kind, day, x, y, n) SELECT '{name}', created_day, {x}, 0, "
                       f"COUNT(*) FROM report_ticket_facts GROUP BY created_day, {x}")
    out.append("INSERT INTO report_day_values (kind, day, x, y, n) SELECT 'photo', closed_day, photos, rating, "
               "COUNT(*) FROM report_ticket_facts WHERE closed_day IS NOT NULL AND rating IS NOT NULL "
               "GROUP BY closed_day, photos, rating")
    out.append("INSERT INTO report_day_technicians (day, assignee_id, closed, rating_sum, rating_n) "
               "SELECT closed_day, assignee_id, COUNT(*), COALESCE(SUM(rating), 0), COUNT(rating) "
               "FROM report_ticket_facts WHERE closed_day IS NOT NULL AND assignee_id != '' "
               "GROUP BY closed_day, assignee_id")
    return out


def upgrade() -> None:
    op.create_table('report_day_rollups',
    sa.Column('dim', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('value', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('priority', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    *[sa.Column(name, sa.BigInteger(), server_default='0', nullable=False) for name in COUNTERS],
    sa.PrimaryKeyConstraint('dim', 'day', 'value', 'priority')
    )
    op.create_table('report_day_technicians',
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('assignee_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('closed', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('rating_sum', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('rating_n', sa.BigInteger(), server_default='0', nullable=False),
    sa.PrimaryKeyConstraint('day', 'assignee_id')
    )
    op.create_table('report_day_values',
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('x', sa.Integer(), nullable=False),
    sa.Column('y', sa.Integer(), nullable=False),
    sa.Column('n', sa.BigInteger(), server_default='0', nullable=False),
    sa.PrimaryKeyConstraint('kind', 'day', 'x', 'y')
    )
    for statement in fill_statements():
        op.execute(statement)


    op.add_column('report_ticket_facts', sa.Column('longest_stay', sa.BigInteger(), server_default='0',
                                                   nullable=False))
    if op.get_bind().dialect.name == 'postgresql':
        longest = "(SELECT MAX((e->>2)::bigint) FROM json_array_elements(stays) e)"
    else:
        longest = "(SELECT MAX(json_extract(value, '$[2]')) FROM json_each(stays))"
    op.execute(f"UPDATE report_ticket_facts SET longest_stay = COALESCE({longest}, 0) WHERE stays IS NOT NULL")
    op.add_column('report_ticket_facts', sa.Column('ongoing_since_us', sa.BigInteger(), nullable=True))
    if op.get_bind().dialect.name == 'postgresql':
        since_us = "(EXTRACT(EPOCH FROM ongoing_since) * 1000000)::bigint"
    else:  # the stored text is 'YYYY-MM-DD HH:MM:SS.ffffff' (storage/types.py UtcDateTime)
        since_us = ("CAST(strftime('%s', ongoing_since) AS INTEGER) * 1000000 "
                    "+ CAST(substr(ongoing_since, 21, 6) AS INTEGER)")
    op.execute(f"UPDATE report_ticket_facts SET ongoing_since_us = {since_us} WHERE ongoing_since IS NOT NULL")
    op.drop_index('ix_report_facts_open', table_name='report_ticket_facts')
    op.create_index('ix_report_facts_open', 'report_ticket_facts', list(OPEN_COLUMNS),
                    sqlite_where=sa.text('is_open IS 1'), postgresql_where=sa.text('is_open IS true'))
    op.create_index('ix_report_facts_store_waits', 'report_ticket_facts',
                    ['store_id', 'created_day', 'first_response_s', 'accept_s', 'longest_stay'])
    op.create_index('ix_report_facts_category_waits', 'report_ticket_facts',
                    ['category', 'created_day', 'first_response_s', 'accept_s', 'longest_stay'])
    op.create_index('ix_report_facts_store_closed', 'report_ticket_facts',
                    ['store_id', 'closed_day', 'category', 'assignee_id', 'rating', 'photos'])
    op.create_index('ix_report_facts_category_closed', 'report_ticket_facts',
                    ['category', 'closed_day', 'store_id', 'assignee_id', 'rating', 'photos'])


def downgrade() -> None:
    op.drop_index('ix_report_facts_category_closed', table_name='report_ticket_facts')
    op.drop_index('ix_report_facts_store_closed', table_name='report_ticket_facts')
    op.drop_table('report_day_values')
    op.drop_table('report_day_technicians')
    op.drop_index('ix_report_facts_category_waits', table_name='report_ticket_facts')
    op.drop_index('ix_report_facts_store_waits', table_name='report_ticket_facts')
    op.drop_index('ix_report_facts_open', table_name='report_ticket_facts')
    op.create_index('ix_report_facts_open', 'report_ticket_facts', ['is_open', 'created_day'])
    op.drop_column('report_ticket_facts', 'ongoing_since_us')
    op.drop_column('report_ticket_facts', 'longest_stay')
    op.drop_table('report_day_rollups')
