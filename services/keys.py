"""API keys of tenants, each call one unit of work over :mod:`db.keys`: look up the tenant of a request's key
(the HTTP API), create, revoke and list keys (``pageqa keys``)."""

from __future__ import annotations

from db import keys as keys_db
from db.engine import session_scope
from db.schema import ApiKey
from pageqa.settings import Settings


def tenant_of(settings: Settings, *, key: str) -> str | None:
    """The tenant of a valid (not revoked) API key, None for an unknown or revoked one; records when the key was
    last used."""
    with session_scope(settings) as session:
        return keys_db.tenant_of(session, key=key)


def create_key(settings: Settings, *, tenant: str, name: str = "") -> keys_db.NewKey:
    """Create an API key for ``tenant`` (a new tenant exists from its first key); the key itself is in the
    returned :class:`~db.keys.NewKey` only, never stored (only its sha256 is).

    Raises:
        InputError: the tenant name is not 1–100 letters, digits, ``_``, ``.`` or ``-``, or is reserved.
    """
    with session_scope(settings) as session:
        return keys_db.create_key(session, tenant=tenant, name=name)


def revoke_key(settings: Settings, *, key_id: int) -> ApiKey:
    """Revoke the key with this id (idempotent); returns its row (detached, ``revoked_at`` set).

    Raises:
        NotFoundError: no such key.
    """
    with session_scope(settings) as session:
        return keys_db.revoke_key(session, key_id=key_id)


def list_keys(settings: Settings, *, tenant: str | None = None) -> list[ApiKey]:
    """Key rows (of one tenant, or every tenant's), oldest first; never the keys themselves (only a prefix)."""
    with session_scope(settings) as session:
        return keys_db.list_keys(session, tenant=tenant)
