"""The verification service: county clerks of the seven departments work their queues."""

from __future__ import annotations

from fastapi import FastAPI

from services.verification.accounts.router import router as accounts_router
from services.verification.cases.router import router as cases_router
from services.verification.settings import VerificationSettings, get_settings
from shared.web import create_service_app


def create_app(settings: VerificationSettings | None = None) -> FastAPI:
    return create_service_app(
        name="verification",
        title="部门核实办理服务 (verification)",
        description="县级各部门工作人员按程序核实、办理救助申请。",
        settings=settings or get_settings(),
        routers=[accounts_router, cases_router],
    )
