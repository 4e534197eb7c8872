"""staff console (issue 22): sign-in links, sessions, saved views

New tables: console_links (one-time sign-in links sent by 后台, kept as the SHA-256 of their token),
console_sessions (signed-in browsers, the same) and console_saved_views (a person's named queue filters).
Ticket indexes for the queue: open tickets by state and time covering its filters and sorts, and a store's
tickets by state, (store_id, status, created_at).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 22:00:00.000000
"""
import sqlalchemy as sa
import sqlmodel.sql.sqltypes  # the columns use sqlmodel.sql.sqltypes: imported by name so mypy sees it
from alembic import op

import storage.types

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None

_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table('console_links',
    sa.Column('token_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('person_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('created_at', storage.types.UtcDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', storage.types.UtcDateTime(timezone=True), nullable=False),
    sa.Column('used_at', storage.types.UtcDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('token_hash')
    )
    op.create_index(op.f('ix_console_links_person_id'), 'console_links', ['person_id'], unique=False)
    op.create_table('console_sessions',
    sa.Column('token_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('person_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('created_at', storage.types.UtcDateTime(timezone=True), nullable=False),
    sa.Column('last_seen_at', storage.types.UtcDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', storage.types.UtcDateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', storage.types.UtcDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('token_hash')
    )
    op.create_index(op.f('ix_console_sessions_person_id'), 'console_sessions', ['person_id'], unique=False)
    op.create_table('console_saved_views',
    sa.Column('id', _BIG_ID, autoincrement=True, nullable=False),
    sa.Column('person_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('query', sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=False),
    sa.Column('created_at', storage.types.UtcDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('person_id', 'name', name='uq_console_saved_views_person_name')
    )
    op.create_index('ix_console_saved_views_person', 'console_saved_views', ['person_id'], unique=False)
    # The queue: open tickets read from an index that covers its filters and sorts (storage/tables.py says why).
    op.create_index('ix_tickets_queue', 'tickets', ['status', 'created_at', 'priority', 'category', 'assignee_id',
                                                    'store_id', 'response_due', 'resolution_due', 'number'],
                    unique=False)
    # A store's tickets in some states, newest first (a store supervisor's queue).
    op.create_index('ix_tickets_store_status_created', 'tickets', ['store_id', 'status', 'created_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_tickets_store_status_created', table_name='tickets')
    op.drop_index('ix_tickets_queue', table_name='tickets')
    op.drop_index('ix_console_saved_views_person', table_name='console_saved_views')
    op.drop_table('console_saved_views')
    op.drop_index(op.f('ix_console_sessions_person_id'), table_name='console_sessions')
    op.drop_table('console_sessions')
    op.drop_index(op.f('ix_console_links_person_id'), table_name='console_links')
    op.drop_table('console_links')
