"""The benefit catalog (惠民事项目录): departments, items and their review stages.

Loaded from `shared/data/catalog.toml` (or `RELIEF_CATALOG_PATH`) and validated at start; a
catalog that does not hold together stops the service instead of failing later.
"""

from __future__ import annotations

import enum
import os
import tomllib
from functools import cache
from pathlib import Path
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

DEFAULT_PATH = Path(__file__).parent / "data" / "catalog.toml"


class Stage(enum.StrEnum):
    """Review stages of the official procedure, in order."""

    FIELD_CHECK = "field_check"  # 实地调查
    VILLAGE_REVIEW = "village_review"  # 村评议公示
    TOWNSHIP_AUDIT = "township_audit"  # 乡镇审核
    COUNTY_DECISION = "county_decision"  # 县级确定


STAGE_ORDER = list(Stage)
_CODE_PATTERN = r"^[a-z][a-z0-9_]{1,39}$"


class Department(BaseModel):
    model_config = ConfigDict(frozen=True)

    code: str = Field(pattern=_CODE_PATTERN)
    name: str = Field(min_length=1)
    full_name: str = Field(min_length=1)


class Item(BaseModel):
    model_config = ConfigDict(frozen=True)

    code: str = Field(pattern=_CODE_PATTERN)
    department: str
    name: str = Field(min_length=1)
    deadline_days: int | None = Field(default=None, ge=1, le=90)
    stages: tuple[Stage, ...] = Field(min_length=1)
    public_notice_days: int | None = Field(default=None, ge=1, le=30)

    @model_validator(mode="after")
    def _stages_in_order(self) -> Self:
        positions = [STAGE_ORDER.index(stage) for stage in self.stages]
        if positions != sorted(set(positions)):
            raise ValueError(f"item {self.code}: stages must be distinct and in procedural order")
        has_review = Stage.VILLAGE_REVIEW in self.stages
        if has_review != (self.public_notice_days is not None):
            raise ValueError(
                f"item {self.code}: public_notice_days goes with, and only with, village_review"
            )
        return self


class Catalog(BaseModel):
    model_config = ConfigDict(frozen=True)

    version: str
    default_deadline_days: int = Field(ge=1, le=90)
    departments: tuple[Department, ...] = Field(min_length=1)
    items: tuple[Item, ...] = Field(min_length=1)

    _items_by_code: dict[str, Item] = PrivateAttr(default_factory=dict)
    _departments_by_code: dict[str, Department] = PrivateAttr(default_factory=dict)

    def model_post_init(self, context: Any, /) -> None:
        self._items_by_code.update((i.code, i) for i in self.items)
        self._departments_by_code.update((d.code, d) for d in self.departments)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        dept_codes = [d.code for d in self.departments]
        item_codes = [i.code for i in self.items]
        for kind, codes in (("department", dept_codes), ("item", item_codes)):
            duplicates = {c for c in codes if codes.count(c) > 1}
            if duplicates:
                raise ValueError(f"duplicate {kind} codes: {sorted(duplicates)}")
        for item in self.items:
            if item.department not in dept_codes:
                raise ValueError(f"item {item.code}: unknown department {item.department}")
        return self

    def item(self, code: str) -> Item | None:
        return self._items_by_code.get(code)

    def department(self, code: str) -> Department | None:
        return self._departments_by_code.get(code)

    def deadline_days(self, item: Item) -> int:
        return item.deadline_days or self.default_deadline_days

    def department_codes(self) -> list[str]:
        return [d.code for d in self.departments]


def load_catalog(path: Path | None = None) -> Catalog:
    path = path or Path(os.environ.get("RELIEF_CATALOG_PATH") or DEFAULT_PATH)
    with path.open("rb") as fh:
        return Catalog.model_validate(tomllib.load(fh))


@cache
def catalog() -> Catalog:
    return load_catalog()
