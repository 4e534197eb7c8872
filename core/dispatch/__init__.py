"""Dispatch: candidate scoring and index, policy, offers, 接单/拒单, expiry, and the technician directory.

Imports the kernel, core.intake and core.lifecycle; not sla or reports (the SLA clock runs first by hook stage).
"""
