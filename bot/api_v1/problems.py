"""Errors as application/problem+json (RFC 9457): `type`, `title`, `status`, `detail`, `instance`,
plus `errors` ([{field, message}]) naming what failed and, on a refused transition, `allowed`."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import ValidationError

from storage.database import compact_json

PROBLEM_TYPE = "urn:ticketbot:problem:"
TITLES = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
          409: "Conflict", 413: "Content Too Large", 415: "Unsupported Media Type", 422: "Unprocessable Content",
          429: "Too Many Requests", 500: "Internal Server Error"}


class ProblemError(Exception):
    """Raised inside a handler; the middleware answers it as problem+json."""

    def __init__(self, status: int, slug: str, detail: str, *, headers: dict[str, str] | None = None,
                 **extra: Any) -> None:
        super().__init__(detail)
        self.status, self.slug, self.detail, self.headers, self.extra = status, slug, detail, headers or {}, extra


def problem_body(status: int, slug: str, detail: str, instance: str | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"type": PROBLEM_TYPE + slug, "title": TITLES.get(status, "Error"), "status": status,
                            "detail": detail}
    if instance is not None:
        body["instance"] = instance
    body.update({k: v for k, v in extra.items() if v is not None})
    return body


def problem_response(status: int, slug: str, detail: str, *, instance: str | None = None,
                     headers: dict[str, str] | None = None, **extra: Any) -> web.Response:
    return web.Response(status=status, text=compact_json(problem_body(status, slug, detail, instance, **extra)),
                        content_type="application/problem+json", headers=headers)


def validation_problem(error: ValidationError) -> ProblemError:
    """422 naming each field that failed (dotted path); unknown fields are named as such."""
    errors: list[dict[str, Any]] = []
    for item in error.errors(include_url=False):
        field = ".".join(str(p) for p in item["loc"]) or "(body)"
        message = "unknown field" if item["type"] == "extra_forbidden" else item["msg"]
        errors.append({"field": field, "message": message})
    unknown = [e["field"] for e in errors if e["message"] == "unknown field"]
    detail = (f"unknown fields: {', '.join(unknown)}" if unknown
              else "invalid fields: " + ", ".join(e["field"] for e in errors))
    return ProblemError(422, "validation", detail, errors=errors)
