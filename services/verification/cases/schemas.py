from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator


class MeasureType(enum.StrEnum):
    """Help measure types (帮扶措施类型)."""

    SOCIAL_SECURITY = "social_security"  # 综合保障
    EMPLOYMENT = "employment"  # 就业帮扶
    HEALTH = "health"  # 健康帮扶
    LIVING_CONDITIONS = "living_conditions"  # 住房饮水等生活条件
    INDUSTRY = "industry"  # 产业帮扶
    PUBLIC_WELFARE_JOB = "public_welfare_job"  # 公益岗位
    EDUCATION = "education"  # 教育帮扶


class Measure(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: MeasureType
    description: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)
    ]


class DecideIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    outcome: Literal["approved", "rejected"]
    measures: list[Measure] = Field(default_factory=list, max_length=20)
    reason: Annotated[str, StringConstraints(strip_whitespace=True, max_length=1000)] = ""

    @model_validator(mode="after")
    def _reason_or_measures(self) -> Self:
        if self.outcome == "rejected" and not self.reason:
            raise ValueError("驳回时必须填写群众能看懂的理由")
        if self.outcome == "approved" and not self.measures:
            raise ValueError("批准时至少填写一项帮扶措施")
        return self


class ApplicantMasked(BaseModel):
    name: str
    id_number: str = Field(description="已脱敏")
    phone: str = Field(description="已脱敏")


class CaseSummary(BaseModel):
    id: uuid.UUID
    application_id: uuid.UUID
    item_code: str
    item_name: str
    department: str
    region_code: str
    region_name: str
    status: str
    status_label: str
    applicant: ApplicantMasked
    assignee_id: uuid.UUID | None
    submitted_at: datetime
    deadline: datetime
    overdue: bool


class RequestInfoIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    message: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=1000)
    ] = Field(description="请群众补充什么（群众可以看懂的话）")


class CaseAttachmentOut(BaseModel):
    id: uuid.UUID
    content_type: str
    size: int
    filename: str
    added_at: datetime


class CaseDetail(CaseSummary):
    household: dict[str, Any]
    description: str
    form: dict[str, Any]
    prescreen: dict[str, Any] | None = Field(description="监测线预筛提示（仅供参考）")
    submitted_by_role: str
    info_request: str | None
    info_requested_at: datetime | None
    attachments: list[CaseAttachmentOut]
    outcome: str | None
    decision_reason: str | None
    measures: list[dict[str, Any]] | None
    decided_at: datetime | None


class CasePage(BaseModel):
    items: list[CaseSummary]
    next_cursor: str | None
