"""API v1 (clients, idempotency keys, external refs)

New tables: api_clients (registered systems, hashed tokens, scopes, the actor person),
api_idempotency (an Idempotency-Key with the first answer, until it expires) and
ticket_external_refs (another system's id of a ticket, unique per system and id).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 18:45:00.000000
"""
import sqlalchemy as sa
import sqlmodel.sql.sqltypes  # the columns use sqlmodel.sql.sqltypes: imported by name so mypy sees it
from alembic import op

import storage.types

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('api_clients',
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('token_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('scopes', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
    sa.Column('person_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', storage.types.UtcDateTime(timezone=True), nullable=False),
    sa.Column('rotated_at', storage.types.UtcDateTime(timezone=True), nullable=True),
    sa.Column('revoked_at', storage.types.UtcDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('name'),
    sa.UniqueConstraint('token_hash')
    )
    op.create_table('api_idempotency',
    sa.Column('client', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('key', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
    sa.Column('request_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('status', sa.Integer(), nullable=False),
    sa.Column('body', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('created_at', storage.types.UtcDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', storage.types.UtcDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('client', 'key')
    )
    op.create_index(op.f('ix_api_idempotency_expires_at'), 'api_idempotency', ['expires_at'], unique=False)
    op.create_table('ticket_external_refs',
    sa.Column('system', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('ref', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('ticket_number', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('created_at', storage.types.UtcDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('system', 'ref')
    )
    op.create_index(op.f('ix_ticket_external_refs_ticket_number'), 'ticket_external_refs', ['ticket_number'],
                    unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_ticket_external_refs_ticket_number'), table_name='ticket_external_refs')
    op.drop_table('ticket_external_refs')
    op.drop_index(op.f('ix_api_idempotency_expires_at'), table_name='api_idempotency')
    op.drop_table('api_idempotency')
    op.drop_table('api_clients')
