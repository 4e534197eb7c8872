"""微信客服 (issue 21): sync cursors, per-customer message budget, held notices, contact-way cache

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 22:00:00.000000
"""
import sqlalchemy as sa
import sqlmodel.sql.sqltypes  # the columns use sqlmodel.sql.sqltypes: imported by name so mypy sees it
from alembic import op

import storage.types

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table('wecom_kf_cursors',
    sa.Column('open_kfid', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('cursor', sqlmodel.sql.sqltypes.AutoString(length=512), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('updated_at', storage.types.UtcDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('open_kfid')
    )
    op.create_table('wecom_kf_budgets',
    sa.Column('external_id', sqlmodel.sql.sqltypes.AutoString(length=160), nullable=False),
    sa.Column('window_start', storage.types.UtcDateTime(timezone=True), nullable=False),
    sa.Column('last_msgid', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('sent', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('external_id')
    )
    op.create_table('wecom_kf_held',
    sa.Column('id', _BIG_ID, autoincrement=True, nullable=False),
    sa.Column('external_id', sqlmodel.sql.sqltypes.AutoString(length=160), nullable=False),
    sa.Column('text', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('ticket_number', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
    sa.Column('held_at', storage.types.UtcDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_wecom_kf_held_external_id'), 'wecom_kf_held', ['external_id'], unique=False)
    op.create_table('wecom_kf_contact_ways',
    sa.Column('store_code', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('open_kfid', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('url', sqlmodel.sql.sqltypes.AutoString(length=2048), nullable=False),
    sa.Column('created_at', storage.types.UtcDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('store_code')
    )
    op.create_table('wecom_kf_seen',
    sa.Column('msgid', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('seen_at', storage.types.UtcDateTime(timezone=True), nullable=False),
    sa.Column('extra', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('msgid')
    )


def downgrade() -> None:
    op.drop_table('wecom_kf_seen')
    op.drop_table('wecom_kf_contact_ways')
    op.drop_index(op.f('ix_wecom_kf_held_external_id'), table_name='wecom_kf_held')
    op.drop_table('wecom_kf_held')
    op.drop_table('wecom_kf_budgets')
    op.drop_table('wecom_kf_cursors')
