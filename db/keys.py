"""API keys of tenants: created once and shown once, stored as their sha256, looked up per request, revoked."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from db.schema import ApiKey
from pageqa.domain import check_name, check_tenant
from pageqa.errors import NotFoundError

#: Every key starts so; a leaked one is recognisable (secret scanners look for fixed prefixes).
KEY_PREFIX = "pqa_"


def hash_key(key: str) -> str:
    """sha256 hex (64 characters) of an API key. A fast hash is enough: keys are 256 random bits, not passwords."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class NewKey:
    """A key just created: its row id, tenant, and the key itself (shown once, never stored)."""

    id: int
    tenant: str
    key: str


def create_key(session: Session, *, tenant: str, name: str = "") -> NewKey:
    """Create an API key for ``tenant`` (a new tenant exists from its first key).

    Raises:
        InputError: the tenant name is not 1–100 letters, digits, ``_``, ``.`` or ``-``, or is ``all`` (the
            nightly report's scope over every tenant) (:func:`pageqa.domain.check_tenant`); or ``name``, when
            given, is not a name (:func:`pageqa.domain.check_name`).
    """
    check_tenant(tenant)
    if name:
        check_name(name, what="key name")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(tenant=tenant, name=name, prefix=key[:12], key_hash=hash_key(key))
    session.add(row)
    session.flush()
    return NewKey(row.id, tenant, key)


def tenant_of(session: Session, *, key: str) -> str | None:
    """The tenant of a valid (not revoked) key, None otherwise; records when the key was last used."""
    row = session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(key), ApiKey.revoked_at.is_(None)))
    if row is None:
        return None
    row.last_used_at = func.now()
    return row.tenant


def revoke_key(session: Session, *, key_id: int) -> ApiKey:
    """Revoke the key with this id (idempotent); returns it.

    Raises:
        NotFoundError: no such key.
    """
    row = session.get(ApiKey, key_id)
    if row is None:
        raise NotFoundError(f"no API key with id {key_id}")
    session.execute(update(ApiKey).where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
                    .values(revoked_at=func.now()))
    session.refresh(row)
    return row


def list_keys(session: Session, *, tenant: str | None = None) -> list[ApiKey]:
    """Keys (of one tenant, or all), oldest first."""
    stmt = select(ApiKey).order_by(ApiKey.id)
    if tenant is not None:
        stmt = stmt.where(ApiKey.tenant == tenant)
    return list(session.scalars(stmt))
