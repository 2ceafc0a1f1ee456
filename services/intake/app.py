"""The intake service: citizens and grid workers submit and follow applications."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from services.intake.applications.bindings import router as bindings_router
from services.intake.applications.router import router as applications_router
from services.intake.auth.router import router as auth_router
from services.intake.catalog.router import router as catalog_router
from services.intake.settings import IntakeSettings, get_settings
from services.intake.worker import GROUP
from shared.events import EVENTS_STREAM
from shared.metrics import MetricsSpec
from shared.objectstore import DirectoryObjectStore
from shared.ratelimit import RateLimiter
from shared.web import create_service_app


def create_app(settings: IntakeSettings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.rate_limiter = RateLimiter(settings.require_redis_url())
        app.state.object_store = DirectoryObjectStore(settings.object_store_path())
        yield
        await app.state.rate_limiter.aclose()

    return create_service_app(
        name="intake",
        title="救助申请受理服务 (intake)",
        description="群众通过微信小程序自主申报；网格员代报。",
        settings=settings,
        routers=[applications_router, catalog_router, auth_router, bindings_router],
        extra_lifespan=lifespan,
        metrics=MetricsSpec(group=GROUP, streams=[EVENTS_STREAM], outbox_schema="intake"),
    )
