"""API v1 (issue 23): /api/v1/ for external systems — tickets, master data, idempotency, clients
with scoped tokens, problem+json errors, and an OpenAPI 3.1 document generated from the same
pydantic models that validate the requests (docs/api.md)."""
