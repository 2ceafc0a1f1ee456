from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from shared.catalog import catalog

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


class CatalogOut(BaseModel):
    version: str
    departments: list[DepartmentOut]
    items: list[ItemOut]


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
            )
            for i in current.items
        ],
    )


@router.get("/catalog", summary="救助事项目录")
async def get_catalog() -> CatalogOut:
    return _catalog_out()
