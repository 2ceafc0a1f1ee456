"""Small builders for test data: valid resident IDs, application bodies, accounts."""

from __future__ import annotations

import itertools
from typing import Any

from stdnum.cn import ric

from shared.catalog import catalog
from shared.forms import sample_form

_sequence = itertools.count(100)


def resident_id(region: str = "530129", birth: str = "19750312", seq: int | None = None) -> str:
    """A valid 18-character resident ID (correct check character)."""
    body = f"{region}{birth}{(seq if seq is not None else next(_sequence)) % 1000:03d}"
    return body + ric.calc_check_digit(body + "0")


def application_body(**overrides: Any) -> dict[str, Any]:
    item_code = overrides.get("item_code", "medical_assistance")
    body: dict[str, Any] = {
        "item_code": item_code,
        "applicant": {"name": "张三", "id_number": resident_id(), "phone": "13812345678"},
        "household": {
            "region_code": "530129",
            "township": "仁德街道",
            "village": "北大营村",
            "address": "北大营村3组12号",
            "size": 4,
            "annual_income_per_capita": 6200,
            "category": "marginal",
        },
        "description": "家中老人住院，自付医疗费用3万元，生活困难。",
        "form": sample_form(item_code) if catalog().item(item_code) else {},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(body.get(key), dict):
            body[key] = {**body[key], **value}
        else:
            body[key] = value
    return body


# The smallest files the upload checks take as what they claim to be (by their first bytes).
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 200
PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"

APPROVAL = {
    "outcome": "approved",
    "measures": [{"type": "health", "description": "医疗救助金 8000 元"}],
    "reason": "住院自付费用高，家庭人均收入低于监测线",
}
