"""Every request tries the routes in order: the API's routers, in the order given, come
before the docs, health and metrics routes (`shared.web.create_service_app`)."""

from __future__ import annotations

import httpx
from fastapi import APIRouter

from shared.settings import ServiceSettings
from shared.web import create_service_app

OWN_PATHS = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc", "/healthz", "/readyz"}


def _router(answer: str) -> APIRouter:
    router = APIRouter()

    @router.get("/same", operation_id=f"same_{answer}")
    async def same() -> dict[str, str]:
        return {"router": answer}

    @router.get(f"/only-{answer}")
    async def only() -> dict[str, str]:
        return {"router": answer}

    return router


async def test_the_routers_come_first_in_the_order_given() -> None:
    app = create_service_app(
        name="route-order",
        title="route order",
        settings=ServiceSettings(),
        routers=[_router("busiest"), _router("quieter")],
    )
    positions = [
        i for i, route in enumerate(app.router.routes) if getattr(route, "path", "") in OWN_PATHS
    ]
    assert len(positions) == len(OWN_PATHS)
    assert min(positions) == 2  # after the two routers, and nothing else before them

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://unit") as client:
        assert (await client.get("/api/v1/same")).json() == {"router": "busiest"}
        assert (await client.get("/api/v1/only-quieter")).json() == {"router": "quieter"}
        assert (await client.get("/healthz")).json()["status"] == "ok"
        assert (await client.get("/openapi.json")).status_code == 200
        assert (await client.get("/docs")).status_code == 200
        assert (await client.get("/api/v1/nothing")).status_code == 404
