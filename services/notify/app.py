"""The notify service: tells citizens what happened, chases deadlines, and keeps the closure
rate (办结率) and its parts for ops."""

from __future__ import annotations

from fastapi import FastAPI

from services.notify.dashboard.router import router as dashboard_router
from services.notify.metrics.gauges import closure_gauges
from services.notify.metrics.router import router as metrics_router
from services.notify.notifications.router import router as notifications_router
from services.notify.reminders.router import router as reminders_router
from services.notify.settings import NotifySettings, get_settings
from services.notify.worker import GROUP
from shared.events import EVENTS_STREAM
from shared.metrics import MetricsSpec
from shared.web import create_service_app


def create_app(settings: NotifySettings | None = None) -> FastAPI:
    app = create_service_app(
        name="notify",
        title="通知与统计服务 (notify)",
        description="告知群众办理结果；统计办结率等指标。",
        settings=settings or get_settings(),
        routers=[metrics_router, notifications_router, reminders_router],
        metrics=MetricsSpec(group=GROUP, streams=[EVENTS_STREAM], hooks=[closure_gauges]),
    )
    app.include_router(dashboard_router)  # /dashboard, for people: no /api/v1 prefix
    return app
