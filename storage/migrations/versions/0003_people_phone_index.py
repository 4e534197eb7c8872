"""people.phone index: front-desk registration (代客报修) finds a customer by phone

Every chat sender is a person, so the table grows with the customers; the lookup must not scan it.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06 12:00:00.000000
"""
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('people', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_people_phone'), ['phone'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('people', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_people_phone'))
