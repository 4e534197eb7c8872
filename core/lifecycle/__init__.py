"""Lifecycle after acceptance: check-in, SOP, photos, plan, QC, parts, sign-off, rework, workflow templates.

Imports the kernel and core.intake; not dispatch, sla or reports.
"""
