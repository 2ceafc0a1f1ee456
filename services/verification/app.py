"""The verification service: county clerks of the seven departments work their queues."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from services.verification.accounts.router import router as accounts_router
from services.verification.cases.router import router as cases_router
from services.verification.settings import VerificationSettings, get_settings
from services.verification.worker import GROUP
from shared.events import route_stream
from shared.metrics import MetricsSpec
from shared.objectstore import DirectoryObjectStore
from shared.web import create_service_app


def create_app(settings: VerificationSettings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.object_store = DirectoryObjectStore(settings.object_store_path())
        yield

    return create_service_app(
        name="verification",
        title="部门核实办理服务 (verification)",
        description="县级各部门工作人员按程序核实、办理救助申请。",
        settings=settings,
        routers=[cases_router, accounts_router],
        extra_lifespan=lifespan,
        metrics=MetricsSpec(
            group=GROUP,
            streams=[route_stream(d) for d in settings.served_departments()],
            outbox_schema="verification",
        ),
    )
