"""SMS_ENDPOINT: "https://host[:port]" (or a bare host) → the scheme and host the SDKs want apart."""

from __future__ import annotations

from urllib.parse import urlsplit


def split_endpoint(endpoint: str) -> tuple[str, str] | None:
    """(scheme, host[:port]) of SMS_ENDPOINT, None when it is empty (the SDK's own endpoint)."""
    endpoint = endpoint.strip()
    if not endpoint:
        return None
    if "://" not in endpoint:
        return "https", endpoint.rstrip("/")
    parts = urlsplit(endpoint)
    return (parts.scheme or "https").lower(), parts.netloc
