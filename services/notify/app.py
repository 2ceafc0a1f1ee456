"""The notify service: closure rate and operations numbers (notifications come next)."""

from __future__ import annotations

from fastapi import FastAPI

from services.notify.metrics.router import router as metrics_router
from services.notify.settings import NotifySettings, get_settings
from shared.web import create_service_app


def create_app(settings: NotifySettings | None = None) -> FastAPI:
    return create_service_app(
        name="notify",
        title="通知与统计服务 (notify)",
        description="告知群众办理结果；统计办结率等指标。",
        settings=settings or get_settings(),
        routers=[metrics_router],
    )
