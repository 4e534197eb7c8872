"""The audit chain's key: `AUDIT_KEY`, or else DATA_DIR/audit.key, generated (mode 0600) by the first
process that needs it and read by every later one. Never logged, never printed.

Several hosts (PostgreSQL) do not share a data folder: each would generate its own key and the chain
would stop verifying, so they must all be given the same AUDIT_KEY (docs/operations.md).
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from bot.settings import Settings
from core.audit.chain import AuditKey
from storage.audit_keys import bind_audit_key

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from storage.unit_of_work import SqlUnitOfWork

log = logging.getLogger(__name__)

KEY_FILE = "audit.key"
MIN_LENGTH = 32  # characters; a generated key has 64 (256 bits)


class AuditKeyError(ValueError):
    """The key cannot be used. The message never contains the key."""


def load_audit_key(settings: Settings) -> AuditKey:
    if settings.audit_key is not None:
        return AuditKey(_checked(settings.audit_key.get_secret_value(), "AUDIT_KEY"))
    if not settings.resolved_database_url().startswith("sqlite"):
        log.warning("AUDIT_KEY is not set: the audit chain is keyed with %s. Processes on other hosts "
                    "generate keys of their own; set the same AUDIT_KEY on every host",
                    settings.data_dir / KEY_FILE)
    return AuditKey(_checked(_read_or_create(settings.data_dir / KEY_FILE), str(settings.data_dir / KEY_FILE)))


def use_audit_key(engine: AsyncEngine, settings: Settings) -> None:
    """Key the chain of everything this engine writes (and checks) with the deployment's key."""
    bind_audit_key(engine, load_audit_key(settings))


def _checked(secret: str, where: str) -> bytes:
    secret = secret.strip()
    if len(secret) < MIN_LENGTH:
        raise AuditKeyError(f"the audit key ({where}) is shorter than {MIN_LENGTH} characters; generate one with "
                            "`python -c \"import secrets; print(secrets.token_hex(32))\"` and set AUDIT_KEY")
    return secret.encode("utf-8")


def _read_or_create(path: Path) -> str:
    try:
        return _read(path)
    except FileNotFoundError:
        pass
    try:
        return _create(path)
    except OSError as error:
        raise AuditKeyError(f"cannot create the audit key {path} ({error.strerror}); set AUDIT_KEY") from None


def _read(path: Path) -> str:
    text = path.read_text(encoding="utf-8")
    if os.name == "posix" and path.stat().st_mode & 0o077:
        log.warning("the audit key %s can be read by other users: chmod 600 it", path)
    return text


def _create(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written to a private temporary file, then linked into place: a process starting at the same
    # moment either wins the link or reads the winner's complete key, never a half-written one.
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            with contextlib.suppress(AttributeError, OSError):
                os.fchmod(file.fileno(), 0o600)  # whatever the umask
            file.write(secrets.token_hex(32) + "\n")
            file.flush()
            os.fsync(file.fileno())
        try:
            os.link(temporary, path)
            log.warning("generated the audit key %s: back it up, apart from the database; without it the audit "
                        "chain cannot be verified", path)
        except FileExistsError:
            pass  # another process was first: its key is the key
    finally:
        temporary.unlink(missing_ok=True)
    return _read(path)


async def seal_legacy_chain(uow_factory: Callable[[], SqlUnitOfWork], now: datetime) -> None:
    """At start: a chain written before audit keys gets its seal now, not at its next event."""
    async with uow_factory() as uow:
        if await uow.seal_legacy_audit(now):
            await uow.commit()
