"""audit head MAC: the chain is keyed (HMAC-SHA256 under AUDIT_KEY)

The column stays NULL on an existing database: its head was written before keys, and the first
keyed event the service writes seals those events (see core/audit/chain.py, docs/operations.md).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06 10:00:00.000000
"""
import sqlalchemy as sa
import sqlmodel.sql.sqltypes  # the columns use sqlmodel.sql.sqltypes: imported by name so mypy sees it
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def _audit_head(*, mac: bool) -> None:
    columns = [
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('seq', sa.Integer(), nullable=False),
        sa.Column('hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    ]
    if mac:
        columns.append(sa.Column('mac', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
    op.create_table('audit_head', *columns, sa.PrimaryKeyConstraint('id'))


def _rebuild_on_sqlite(*, mac: bool) -> None:
    # SQLite appends an added column after the constraints, and a table Alembic rebuilds under a
    # temporary name keeps its name quoted: either way it would not read as the models create it.
    # The table holds one row: it is copied out, the table created anew, and the row put back.
    conn = op.get_bind()
    rows = conn.execute(sa.text("SELECT id, seq, hash FROM audit_head")).mappings().all()
    op.drop_table('audit_head')
    _audit_head(mac=mac)
    for row in rows:
        conn.execute(sa.text("INSERT INTO audit_head (id, seq, hash) VALUES (:id, :seq, :hash)"), dict(row))


def upgrade() -> None:
    if op.get_bind().dialect.name == 'sqlite':
        _rebuild_on_sqlite(mac=True)
    else:
        op.add_column('audit_head', sa.Column('mac', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))


def downgrade() -> None:
    if op.get_bind().dialect.name == 'sqlite':
        _rebuild_on_sqlite(mac=False)
    else:
        op.drop_column('audit_head', 'mac')
