"""What the dashboard router serves, over HTTP through the notify app: one page that loads
nothing from outside this service, and its files with long-lived cache headers."""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import AsyncIterator

import httpx
import pytest

from services.notify.app import create_app
from services.notify.dashboard.router import STATIC_DIR, router
from services.notify.settings import NotifySettings
from shared.catalog import catalog
from tests.browser.dom import parse


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    # Only the page and its files: no request here reaches the database or Redis.
    app = create_app(NotifySettings())
    app.include_router(router)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://notify") as client:
        yield client


async def test_the_page_loads_only_its_own_files(client: httpx.AsyncClient) -> None:
    response = await client.get("/dashboard")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["cache-control"] == "no-cache"
    policy = response.headers["content-security-policy"]
    assert "default-src 'none'" in policy
    assert "script-src 'self'" in policy
    page = parse(response.text)
    assert page.find_all("html")[0].attrs["lang"] == "zh-CN"
    references = [
        element.attrs.get("src") or element.attrs.get("href") or ""
        for element in page.iter()
        if element.tag in {"script", "link", "img"}
    ]
    assert not [r for r in references if re.match(r"^(https?:)?//", r)], references
    assert not re.search(r"https?://|@import|fonts\.googleapis", response.text)
    for element_id in ("closure-rate", "received-count", "closed-count", "open-count"):
        page.by_id(element_id)


async def test_the_page_carries_the_catalog_names(client: httpx.AsyncClient) -> None:
    page = parse((await client.get("/dashboard")).text)
    names = json.loads(page.by_id("catalog-names").text)
    assert [d["code"] for d in names["departments"]] == catalog().department_codes()
    assert {"code": "civil", "name": "民政"} in names["departments"]
    assert len(names["items"]) == len(catalog().items) == 15
    water = next(i for i in names["items"] if i["code"] == "drinking_water")
    assert water == {"code": "drinking_water", "name": "农村饮水安全", "department": "water"}


async def test_assets_are_versioned_cached_and_compressed(client: httpx.AsyncClient) -> None:
    page = (await client.get("/dashboard")).text
    urls = re.findall(r'(?:src|href)="(dashboard/static/[^"]+\?v=[0-9a-f]{16})"', page)
    assert {u.split("/")[-1].split("?")[0] for u in urls} == {
        "chart.umd.min.js",
        "dashboard.js",
        "dashboard.css",
    }
    for url in urls:
        name = url.split("/")[-1].split("?")[0]
        on_disk = (STATIC_DIR / name).read_bytes()
        plain = await client.get(f"/{url}", headers={"Accept-Encoding": "identity"})
        assert plain.status_code == 200
        assert plain.content == on_disk
        assert "immutable" in plain.headers["cache-control"]
        assert "max-age=31536000" in plain.headers["cache-control"]

        # Read the raw bytes: httpx would undo the compression for us.
        async with client.stream(
            "GET", f"/{url}", headers={"Accept-Encoding": "gzip, br"}
        ) as compressed:
            assert compressed.headers["content-encoding"] == "gzip"
            raw = b"".join([chunk async for chunk in compressed.aiter_raw()])
        assert gzip.decompress(raw) == on_disk
        assert len(raw) < len(on_disk)

        again = await client.get(f"/{url}", headers={"If-None-Match": plain.headers["etag"]})
        assert again.status_code == 304
        assert again.content == b""


async def test_the_vendored_chart_library_keeps_its_licence(client: httpx.AsyncClient) -> None:
    licence = await client.get("/dashboard/static/chart.umd.min.js.LICENSE.md")
    assert licence.status_code == 200
    assert "MIT License" in licence.text
    assert "Chart.js Contributors" in licence.text


async def test_an_unknown_file_is_a_404_in_chinese(client: httpx.AsyncClient) -> None:
    response = await client.get("/dashboard/static/no-such-file.js")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "asset_not_found"
    assert response.json()["error"]["message"] == "找不到该文件"
