from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from services.intake.settings import IntakeSettings
from shared.auth import Audience, Principal, Role, bearer_token, decode_token
from shared.errors import Forbidden


def _settings(request: Request) -> IntakeSettings:
    settings: IntakeSettings = request.app.state.settings
    return settings


Settings = Annotated[IntakeSettings, Depends(_settings)]


def _current_citizen(
    settings: Settings, authorization: Annotated[str | None, Header()] = None
) -> Principal:
    principal = decode_token(settings, bearer_token(authorization), audience=Audience.CITIZEN)
    if principal.role not in (Role.CITIZEN, Role.GRID_WORKER):
        raise Forbidden()
    return principal


CurrentCitizen = Annotated[Principal, Depends(_current_citizen)]
