"""`GET /dashboard`: the closure rate (办结率) and its parts, as one page for people on duty.

The page is static HTML; its script reads `/api/v1/metrics/closure` every 30 seconds. Its
script and style files, Chart.js among them, ship in `static/` and are served from here, so
the page needs nothing from the internet. The router carries its own paths: include it
without the `/api/v1` prefix.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Header, Response
from fastapi.responses import HTMLResponse

from shared.catalog import catalog
from shared.errors import NotFound

PACKAGE_DIR = Path(__file__).resolve().parent
STATIC_DIR = PACKAGE_DIR / "static"
TEMPLATE_PATH = PACKAGE_DIR / "dashboard.html"
PAGE_PATH = "/dashboard"
STATIC_PATH = f"{PAGE_PATH}/static"

_MEDIA_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".md": "text/plain; charset=utf-8",  # licence texts of vendored files
}
# Asset URLs carry a hash of the content (?v=...): a browser on a slow line keeps them a year
# and a new release still reaches it.
_ASSET_CACHE_CONTROL = "public, max-age=31536000, immutable"
# Everything the page loads comes from this service; nothing inline runs.
_CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)
_PAGE_HEADERS = {
    # The page embeds the asset hashes: revalidate it, so a release is picked up at once.
    "Cache-Control": "no-cache",
    "Content-Security-Policy": _CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
_ASSET_PLACEHOLDER = re.compile(r"\{\{\s*asset:([\w.\-]+)\s*\}\}")
_CATALOG_PLACEHOLDER = "{{ catalog_names }}"

router = APIRouter(tags=["dashboard"])


@dataclass(frozen=True, slots=True)
class StaticAsset:
    body: bytes
    gzipped: bytes
    media_type: str
    version: str


def load_assets(directory: Path) -> dict[str, StaticAsset]:
    assets = {}
    for path in sorted(directory.iterdir()):
        media_type = _MEDIA_TYPES.get(path.suffix)
        if media_type is None or not path.is_file():
            continue
        body = path.read_bytes()
        assets[path.name] = StaticAsset(
            body=body,
            gzipped=gzip.compress(body, compresslevel=9, mtime=0),
            media_type=media_type,
            version=hashlib.sha256(body).hexdigest()[:16],
        )
    return assets


ASSETS = load_assets(STATIC_DIR)


def catalog_names() -> dict[str, Any]:
    """Chinese names of departments and items, in catalog order, for the page's tables."""
    current = catalog()
    return {
        "departments": [{"code": d.code, "name": d.name} for d in current.departments],
        "items": [
            {"code": i.code, "name": i.name, "department": i.department} for i in current.items
        ],
    }


def _asset_url(match: re.Match[str]) -> str:
    name = match.group(1)
    # Relative to the page, so the page also works behind a proxy that adds a path prefix.
    return f"{STATIC_PATH.lstrip('/')}/{name}?v={ASSETS[name].version}"


@cache
def dashboard_html() -> str:
    names = json.dumps(catalog_names(), ensure_ascii=False, separators=(",", ":"))
    # Inside <script type="application/json"> only "</script" could end the block early.
    names = names.replace("<", "\\u003c")
    template = TEMPLATE_PATH.read_text(encoding="utf-8")
    return _ASSET_PLACEHOLDER.sub(_asset_url, template).replace(_CATALOG_PLACEHOLDER, names)


@router.get(
    PAGE_PATH,
    response_class=HTMLResponse,
    summary="运维看板（办结率、积压、超期）",
    description="面向值班运维人员的网页；数据来自 /api/v1/metrics/closure，每 30 秒自动刷新。",
)
async def dashboard() -> HTMLResponse:
    return HTMLResponse(dashboard_html(), headers=_PAGE_HEADERS)


@router.get(f"{STATIC_PATH}/{{name}}", include_in_schema=False)
async def static_asset(
    name: str,
    accept_encoding: Annotated[str, Header()] = "",
    if_none_match: Annotated[str, Header()] = "",
) -> Response:
    asset = ASSETS.get(name)
    if asset is None:
        raise NotFound("找不到该文件", code="asset_not_found")
    etag = f'W/"{asset.version}"'
    headers = {
        "Cache-Control": _ASSET_CACHE_CONTROL,
        "ETag": etag,
        "Vary": "Accept-Encoding",
        "X-Content-Type-Options": "nosniff",
    }
    if etag in if_none_match or if_none_match.strip() == "*":
        return Response(status_code=304, headers=headers)
    if _accepts_gzip(accept_encoding):
        headers["Content-Encoding"] = "gzip"
        return Response(asset.gzipped, media_type=asset.media_type, headers=headers)
    return Response(asset.body, media_type=asset.media_type, headers=headers)


def _accepts_gzip(accept_encoding: str) -> bool:
    for part in accept_encoding.lower().split(","):
        coding, _, params = part.strip().partition(";")
        if coding.strip() == "gzip":
            return params.replace(" ", "") not in {"q=0", "q=0.0", "q=0.00", "q=0.000"}
    return False
