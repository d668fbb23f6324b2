"""What every route shares: the settings, the caller's tenant (from its API key), the uploads folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from pageqa.settings import Settings
from services import keys

_bearer = HTTPBearer(auto_error=False, description="An API key from `pageqa keys create`.")


def get_settings_dep(request: Request) -> Settings:
    """The settings the app was created with."""
    return request.app.state.settings


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]


def tenant(
    settings: SettingsDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    """The tenant of the request's API key (``Authorization: Bearer KEY``).

    Raises:
        HTTPException: 401 when the key is missing, unknown or revoked.
    """
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
        raise HTTPException(401, "an API key is required: Authorization: Bearer KEY",
                            headers={"WWW-Authenticate": "Bearer"})
    found = keys.tenant_of(settings, key=credentials.credentials)
    if found is None:
        raise HTTPException(401, "the API key is unknown or revoked", headers={"WWW-Authenticate": "Bearer"})
    return found


TenantDep = Annotated[str, Depends(tenant)]


def uploads_dir(settings: Settings) -> Path:
    """Where uploads wait to be read (``PAGEQA_HOME/uploads``), under names the server makes."""
    path = settings.home_dir / "uploads"
    path.mkdir(parents=True, exist_ok=True)
    return path
