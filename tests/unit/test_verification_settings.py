"""A verification deployment serves the departments it is configured for."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.verification.settings import VerificationSettings
from shared.events import route_stream


def test_default_serves_all_seven_departments() -> None:
    served = VerificationSettings().served_departments()
    assert served == ["civil", "hrss", "health", "medins", "edu", "housing", "water"]


def test_a_department_deployment_reads_only_its_route_stream(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RELIEF_VERIFICATION_DEPARTMENTS", '["civil"]')
    served = VerificationSettings().served_departments()
    assert [route_stream(d) for d in served] == ["relief:route:civil"]


def test_unknown_departments_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELIEF_VERIFICATION_DEPARTMENTS", '["civil", "finance"]')
    with pytest.raises(ValidationError, match="finance"):
        VerificationSettings()
