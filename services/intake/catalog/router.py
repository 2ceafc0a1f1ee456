from __future__ import annotations

from functools import cache
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from shared.catalog import catalog
from shared.forms import form_schema

router = APIRouter(tags=["catalog"])


class DepartmentOut(BaseModel):
    code: str
    name: str
    full_name: str


class ItemOut(BaseModel):
    code: str
    name: str
    department: str
    deadline_days: int
    stages: list[str]
    form: list[dict[str, Any]] = Field(description="申请表专项内容：小程序据此渲染表单")


class CatalogOut(BaseModel):
    version: str
    departments: list[DepartmentOut]
    items: list[ItemOut]


@cache
def _catalog_out() -> CatalogOut:
    current = catalog()
    return CatalogOut(
        version=current.version,
        departments=[DepartmentOut(**d.model_dump()) for d in current.departments],
        items=[
            ItemOut(
                code=i.code,
                name=i.name,
                department=i.department,
                deadline_days=current.deadline_days(i),
                stages=[s.value for s in i.stages],
                form=form_schema(i),
            )
            for i in current.items
        ],
    )


@router.get("/catalog", summary="救助事项目录")
async def get_catalog() -> CatalogOut:
    return _catalog_out()
