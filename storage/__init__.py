"""Persistence: sqlmodel tables, Alembic migrations, the unit of work, repositories, inbox and outbox.

Lowest first: storage.sqlite (driver tuning) < storage.transactions < the modules at this level; imports
core (the ports it implements) and no bot/, adapters/ or nlp/.
"""
