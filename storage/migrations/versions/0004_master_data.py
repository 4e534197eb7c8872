"""master data (stores, teams, customers, assets, contracts; ticket links)

New tables: teams, customers, customer_phones, assets, contracts, contract_assets. Stores gain
opening_hours, phone, active (server defaults fill the existing rows); people gain team_id and
title; tickets gain store_id and asset_id (indexed). SQLite inserts an added column after the
table's last column, so the tables read as the models create them without a rebuild.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06 18:40:00.000000
"""
import sqlalchemy as sa
import sqlmodel.sql.sqltypes  # the columns use sqlmodel.sql.sqltypes: imported by name so mypy sees it
from alembic import op

import storage.types

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('stores', sa.Column('opening_hours', sqlmodel.sql.sqltypes.AutoString(), server_default='',
                                      nullable=False))
    op.add_column('stores', sa.Column('phone', sqlmodel.sql.sqltypes.AutoString(), server_default='',
                                      nullable=False))
    op.add_column('stores', sa.Column('active', sa.Boolean(), server_default=sa.true(), nullable=False))

    op.add_column('people', sa.Column('team_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
    op.add_column('people', sa.Column('title', sqlmodel.sql.sqltypes.AutoString(), nullable=True))
    op.create_index(op.f('ix_people_team_id'), 'people', ['team_id'], unique=False)

    op.add_column('tickets', sa.Column('store_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
    op.add_column('tickets', sa.Column('asset_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
    op.create_index(op.f('ix_tickets_store_id'), 'tickets', ['store_id'], unique=False)
    op.create_index(op.f('ix_tickets_asset_id'), 'tickets', ['asset_id'], unique=False)

    op.create_table('teams',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('store_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('leader_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_teams_store_id'), 'teams', ['store_id'], unique=False)

    op.create_table('customers',
    sa.Column('person_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('phones', sa.JSON(), nullable=False),
    sa.Column('addresses', sa.JSON(), nullable=False),
    sa.Column('company', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('service_level', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('store_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('forgotten_at', storage.types.UtcDateTime(timezone=True), nullable=True),
    sa.Column('updated_at', storage.types.UtcDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('person_id')
    )

    op.create_table('customer_phones',
    sa.Column('phone', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('person_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.PrimaryKeyConstraint('phone', 'person_id')
    )
    op.create_index(op.f('ix_customer_phones_person_id'), 'customer_phones', ['person_id'], unique=False)

    op.create_table('assets',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('sn_key', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('vin', sqlmodel.sql.sqltypes.AutoString(length=17), nullable=True),
    sa.Column('plate', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True),
    sa.Column('display_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('brand', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('model', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('store_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('customer_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('installed_on', sa.Date(), nullable=True),
    sa.Column('purchased_on', sa.Date(), nullable=True),
    sa.Column('warranty_end', sa.Date(), nullable=True),
    sa.Column('params', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_assets_sn_key'), 'assets', ['sn_key'], unique=True)
    op.create_index(op.f('ix_assets_vin'), 'assets', ['vin'], unique=True)
    op.create_index(op.f('ix_assets_plate'), 'assets', ['plate'], unique=True)
    op.create_index(op.f('ix_assets_store_id'), 'assets', ['store_id'], unique=False)
    op.create_index(op.f('ix_assets_customer_id'), 'assets', ['customer_id'], unique=False)
    op.create_index(op.f('ix_assets_warranty_end'), 'assets', ['warranty_end'], unique=False)

    op.create_table('contracts',
    sa.Column('number', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('customer_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('level', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('valid_from', sa.Date(), nullable=False),
    sa.Column('valid_to', sa.Date(), nullable=False),
    sa.PrimaryKeyConstraint('number')
    )
    op.create_index(op.f('ix_contracts_customer_id'), 'contracts', ['customer_id'], unique=False)
    op.create_index(op.f('ix_contracts_valid_to'), 'contracts', ['valid_to'], unique=False)

    op.create_table('contract_assets',
    sa.Column('contract_number', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('asset_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.PrimaryKeyConstraint('contract_number', 'asset_id')
    )
    op.create_index(op.f('ix_contract_assets_asset_id'), 'contract_assets', ['asset_id'], unique=False)


def downgrade() -> None:
    for table in ('contract_assets', 'contracts', 'assets', 'customer_phones', 'customers', 'teams'):
        op.drop_table(table)  # their indexes go with them
    op.drop_index(op.f('ix_tickets_asset_id'), table_name='tickets')
    op.drop_index(op.f('ix_tickets_store_id'), table_name='tickets')
    op.drop_index(op.f('ix_people_team_id'), table_name='people')
    # SQLite ≥ 3.35 drops a column in place; batch mode rebuilds the table where it cannot.
    with op.batch_alter_table('tickets') as batch_op:
        batch_op.drop_column('asset_id')
        batch_op.drop_column('store_id')
    with op.batch_alter_table('people') as batch_op:
        batch_op.drop_column('title')
        batch_op.drop_column('team_id')
    with op.batch_alter_table('stores') as batch_op:
        batch_op.drop_column('active')
        batch_op.drop_column('phone')
        batch_op.drop_column('opening_hours')
