"""SLA: business calendar, the 27-cell matrix, deadlines and timers on tickets, reminders, escalation.

Imports the kernel, core.intake, core.lifecycle and core.dispatch (转派 candidates); not reports.
"""
