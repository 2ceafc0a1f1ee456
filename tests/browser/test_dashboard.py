"""The ops dashboard in a real (headless) browser: the numbers the province reports appear
as the API computes them, with Chinese names and thousands separators; when the API fails,
a Chinese warning says so."""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.catalog import catalog
from shared.embedded import free_port
from tests.browser.conftest import (
    SCREENSHOTS,
    KnownFacts,
    notify_env,
    notify_server,
    redis_url,
    run_chromium,
)
from tests.browser.dom import Element, parse
from tests.conftest import Infra

pytestmark = pytest.mark.e2e


def grouped(n: int) -> str:
    return f"{n:,}"


def rounded(value: float, places: str) -> str:
    """As Intl.NumberFormat rounds: the exact value of the double, half away from zero."""
    return str(Decimal(value).quantize(Decimal(places), rounding=ROUND_HALF_UP))


def text(page: Element, element_id: str) -> str:
    return page.by_id(element_id).text.strip()


def table_rows(page: Element, table_id: str) -> dict[str, list[str]]:
    body = page.by_id(table_id).find_all("tbody")[0]
    return {
        row.attrs["data-code"]: [cell.text.strip() for cell in row.find_all("td")]
        for row in body.find_all("tr")
        if "data-code" in row.attrs
    }


def refused_by_policy(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "Content Security Policy" in line]


def test_dashboard_shows_the_closure_rate_and_its_parts(
    chromium: str,
    infra: Infra,
    facts_database: tuple[str, KnownFacts],
    tmp_path: Path,
) -> None:
    database_url, facts = facts_database
    env = notify_env(tmp_path, database_url, redis_url(infra))
    with notify_server(env, tmp_path / "notify") as base_url:
        totals: dict[str, Any] = httpx.get(f"{base_url}/api/v1/metrics/closure", timeout=60).json()
        dumped = run_chromium(
            chromium, f"{base_url}/dashboard", tmp_path / "profile-dom", "--dump-dom"
        )
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        screenshot = SCREENSHOTS / "dashboard.png"
        screenshot.unlink(missing_ok=True)
        run_chromium(
            chromium,
            f"{base_url}/dashboard",
            tmp_path / "profile-shot",
            f"--screenshot={screenshot}",
            "--window-size=1400,1000",
        )

    page = parse(dumped.stdout)
    assert page.by_id("error-banner").attrs.get("hidden") is not None, text(page, "error-banner")
    assert text(page, "closure-rate") == "99.21%"
    assert text(page, "received-count") == "466,200" == grouped(facts.received)
    assert text(page, "closed-count") == "462,500" == grouped(facts.closed)
    assert text(page, "open-count") == "3,700" == grouped(facts.open)
    assert text(page, "overdue-count") == grouped(facts.overdue)
    assert "alert" in page.by_id("overdue-card").classes()
    closed = totals["closed"]
    assert closed["total"] == facts.closed
    for outcome in ("approved", "rejected", "withdrawn"):
        assert text(page, f"closed-{outcome}") == grouped(closed[outcome])
    assert text(page, "on-time-rate") == f"{rounded(totals['on_time_rate'], '0.01')}%"
    assert text(page, "median-hours") == rounded(totals["median_handling_hours"], "0.1")
    satisfaction = totals["satisfaction"]
    assert text(page, "satisfaction") == rounded(satisfaction["average"], "0.01")
    assert text(page, "satisfaction-count") == grouped(satisfaction["count"])
    assert re.fullmatch(r"\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2}", text(page, "last-updated"))

    # Backlog per department and item, by Chinese name, adding up to the totals.
    departments = table_rows(page, "department-table")
    assert set(departments) == {d.code for d in catalog().departments}
    assert departments["civil"][0] == "民政"
    assert sum(int(row[1].replace(",", "")) for row in departments.values()) == facts.open
    assert sum(int(row[2].replace(",", "")) for row in departments.values()) == facts.overdue
    items = table_rows(page, "item-table")
    assert set(items) == {i.code for i in catalog().items}
    assert items["drinking_water"][:2] == ["农村饮水安全", "水利"]
    assert sum(int(row[3].replace(",", "")) for row in items.values()) == facts.overdue

    # Chart.js ran: it sizes its canvases.
    for canvas_id in ("rate-chart", "volume-chart"):
        assert "box-sizing" in page.by_id(canvas_id).attrs.get("style", ""), canvas_id

    assert not refused_by_policy(dumped.stderr)
    assert screenshot.stat().st_size > 20_000  # a rendered page, not a blank one


def test_dashboard_warns_in_chinese_when_the_data_cannot_be_fetched(
    chromium: str, infra: Infra, tmp_path: Path
) -> None:
    # A database nobody listens on: the metrics API answers 503, the page must say so.
    unreachable = f"postgresql://relief@127.0.0.1:{free_port()}/relief"
    env = notify_env(tmp_path, unreachable, redis_url(infra))
    with notify_server(env, tmp_path / "notify") as base_url:
        dumped = run_chromium(chromium, f"{base_url}/dashboard", tmp_path / "profile", "--dump-dom")
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        run_chromium(
            chromium,
            f"{base_url}/dashboard",
            tmp_path / "profile-shot",
            f"--screenshot={SCREENSHOTS / 'dashboard-error.png'}",
            "--window-size=1400,1000",
        )

    page = parse(dumped.stdout)
    banner = page.by_id("error-banner")
    assert banner.attrs.get("hidden") is None
    assert "数据获取失败" in banner.text
    assert "全部数据 HTTP 503" in banner.text
    assert "秒后自动重试" in banner.text
    assert text(page, "closure-rate") == "—"
    assert text(page, "last-updated") == "—"
    assert "获取失败" in page.by_id("department-table").text
