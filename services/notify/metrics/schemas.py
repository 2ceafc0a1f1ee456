from __future__ import annotations

import enum

from pydantic import BaseModel, Field


class GroupBy(enum.StrEnum):
    DEPARTMENT = "department"
    ITEM = "item"
    REGION = "region"
    DAY = "day"


class ClosedCounts(BaseModel):
    total: int
    approved: int
    rejected: int
    withdrawn: int


class Satisfaction(BaseModel):
    average: float | None = Field(description="平均评分（1–5）")
    count: int


class ClosureStats(BaseModel):
    key: str | None = Field(default=None, description="分组值；无分组时为空")
    received: int
    closed: ClosedCounts
    open: int
    overdue: int
    closure_rate: float | None = Field(description="办结率（%），两位小数，四舍五入")
    on_time_rate: float | None = Field(description="按时办结率（%）")
    median_handling_hours: float | None
    satisfaction: Satisfaction
    closed_on_day: int | None = Field(
        default=None, description="按日分组时：当天办结的申请数（不论何日受理）"
    )


class ClosureReport(BaseModel):
    group_by: GroupBy | None
    groups: list[ClosureStats]
