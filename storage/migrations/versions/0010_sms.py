"""SMS and the store report page (issue 21): phone codes, per-phone and per-IP limits

New tables: sms_codes (the live confirmation code of a phone, hashed), sms_sends (the SMS log the
per-phone limit counts) and report_page_hits (the report page's per-IP counter).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 22:00:00.000000
"""
import sqlalchemy as sa
import sqlmodel.sql.sqltypes  # the columns use sqlmodel.sql.sqltypes: imported by name so mypy sees it
from alembic import op

import storage.types

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table('sms_codes',
    sa.Column('phone', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('code_mac', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('created_at', storage.types.UtcDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', storage.types.UtcDateTime(timezone=True), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('phone')
    )
    op.create_table('sms_sends',
    sa.Column('id', _BIG_ID, autoincrement=True, nullable=False),
    sa.Column('phone', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('at', storage.types.UtcDateTime(timezone=True), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('state', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('ticket_number', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
    sa.Column('ticket_status', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
    sa.Column('provider', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('message_id', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_sms_sends_phone_at', 'sms_sends', ['phone', 'at'], unique=False)
    op.create_table('report_page_hits',
    sa.Column('id', _BIG_ID, autoincrement=True, nullable=False),
    sa.Column('ip', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('at', storage.types.UtcDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_report_page_hits_ip_kind_at', 'report_page_hits', ['ip', 'kind', 'at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_report_page_hits_ip_kind_at', table_name='report_page_hits')
    op.drop_table('report_page_hits')
    op.drop_index('ix_sms_sends_phone_at', table_name='sms_sends')
    op.drop_table('sms_sends')
    op.drop_table('sms_codes')
