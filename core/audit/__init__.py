"""Audit: the keyed hash chain of audit events and the audited refusal of privileged commands.

Imports only the kernel (core top level); no other capability.
"""
