"""Intake: a fault report becomes a ticket (numbering, after-create and card hooks), urgency, triage.

Imports only the kernel; every other capability may import it (its hooks are how they join a new ticket).
"""
