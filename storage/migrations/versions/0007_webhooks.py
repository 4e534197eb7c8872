"""webhooks (subscriptions, deliveries)

New tables: webhook_subscriptions (a system's URL, secret and event types), webhook_deliveries (the
webhook outbox: one row per event and subscription, written in the transaction of the change) and
webhook_attempts (the delivery log, one row per attempt).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 18:45:00.000000
"""
import sqlalchemy as sa
import sqlmodel.sql.sqltypes  # the columns use sqlmodel.sql.sqltypes: imported by name so mypy sees it
from alembic import op

import storage.types

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table('webhook_subscriptions',
    sa.Column('id', _BIG_ID, autoincrement=True, nullable=False),
    sa.Column('client', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('url', sqlmodel.sql.sqltypes.AutoString(length=2048), nullable=False),
    sa.Column('secret', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('events', sa.JSON(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', storage.types.UtcDateTime(timezone=True), nullable=False),
    sa.Column('removed_at', storage.types.UtcDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_webhook_subscriptions_client'), 'webhook_subscriptions', ['client'], unique=False)
    op.create_table('webhook_deliveries',
    sa.Column('id', _BIG_ID, autoincrement=True, nullable=False),
    sa.Column('subscription_id', sa.Integer(), nullable=False),
    sa.Column('event_id', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
    sa.Column('event_type', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('ticket_number', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
    sa.Column('body', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('created_at', storage.types.UtcDateTime(timezone=True), nullable=False),
    sa.Column('next_attempt_at', storage.types.UtcDateTime(timezone=True), nullable=False),
    sa.Column('give_up_at', storage.types.UtcDateTime(timezone=True), nullable=False),
    sa.Column('last_attempt_at', storage.types.UtcDateTime(timezone=True), nullable=True),
    sa.Column('delivered_at', storage.types.UtcDateTime(timezone=True), nullable=True),
    sa.Column('last_status', sa.Integer(), nullable=True),
    sa.Column('last_latency_ms', sa.Integer(), nullable=True),
    sa.Column('last_error', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_webhook_deliveries_due', 'webhook_deliveries',
                    ['subscription_id', 'status', 'next_attempt_at'], unique=False)
    op.create_index('ix_webhook_deliveries_status_due', 'webhook_deliveries', ['status', 'next_attempt_at'],
                    unique=False)
    op.create_index(op.f('ix_webhook_deliveries_event_id'), 'webhook_deliveries', ['event_id'], unique=False)
    op.create_index(op.f('ix_webhook_deliveries_ticket_number'), 'webhook_deliveries', ['ticket_number'],
                    unique=False)
    op.create_table('webhook_attempts',
    sa.Column('id', _BIG_ID, autoincrement=True, nullable=False),
    sa.Column('delivery_id', sa.Integer(), nullable=False),
    sa.Column('subscription_id', sa.Integer(), nullable=False),
    sa.Column('at', storage.types.UtcDateTime(timezone=True), nullable=False),
    sa.Column('signature', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('status_code', sa.Integer(), nullable=True),
    sa.Column('latency_ms', sa.Integer(), nullable=False),
    sa.Column('error', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_webhook_attempts_delivery_id'), 'webhook_attempts', ['delivery_id'], unique=False)
    op.create_index(op.f('ix_webhook_attempts_subscription_id'), 'webhook_attempts', ['subscription_id'],
                    unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_webhook_attempts_subscription_id'), table_name='webhook_attempts')
    op.drop_index(op.f('ix_webhook_attempts_delivery_id'), table_name='webhook_attempts')
    op.drop_table('webhook_attempts')
    op.drop_index(op.f('ix_webhook_deliveries_ticket_number'), table_name='webhook_deliveries')
    op.drop_index(op.f('ix_webhook_deliveries_event_id'), table_name='webhook_deliveries')
    op.drop_index('ix_webhook_deliveries_status_due', table_name='webhook_deliveries')
    op.drop_index('ix_webhook_deliveries_due', table_name='webhook_deliveries')
    op.drop_table('webhook_deliveries')
    op.drop_index(op.f('ix_webhook_subscriptions_client'), table_name='webhook_subscriptions')
    op.drop_table('webhook_subscriptions')
