"""The work-order hub (issue 23): what external systems do to tickets through API v1 — create with
their own reference, move by name under the status lock, comment — as core commands."""
