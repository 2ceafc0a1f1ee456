from __future__ import annotations

import enum
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError


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


class AdvanceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: Annotated[str, StringConstraints(strip_whitespace=True, max_length=1000)] = ""


class FieldCheckIn(BaseModel):
    """实地调查记录."""

    model_config = ConfigDict(extra="forbid")

    visited_on: date = Field(description="入户调查日期")
    findings: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)
    ] = Field(description="调查情况")
    household_confirmed: bool = Field(description="家庭成员与申报一致")
    income_per_capita_verified: Decimal | None = Field(
        default=None, ge=0, le=10_000_000, decimal_places=2, description="核实的人均纯收入（元）"
    )

    @field_validator("visited_on")
    @classmethod
    def _not_in_future(cls, value: date) -> date:
        if value > (datetime.now(UTC) + timedelta(hours=8)).date():
            raise PydanticCustomError("date_in_future", "调查日期不能晚于今天")
        return value


class TransferIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to_item_code: str = Field(min_length=1, max_length=40, description="应转交的事项（其他部门）")
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=2, max_length=1000)]


class AssignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=1, max_length=50)
    reason: Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)] = ""


class RevealIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    field: Literal["id_number", "phone"]
    reason: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=2, max_length=500)
    ] = Field(description="查看理由（记入审计日志）")


class RevealOut(BaseModel):
    field: str
    value: str


class StageOut(BaseModel):
    status: str
    name: str
    state: Literal["done", "current", "pending"]


class AuditEntryOut(BaseModel):
    action: str
    from_status: str | None
    to_status: str
    actor_name: str | None
    actor_role: str
    reason: str | None
    data: dict[str, Any] | None
    occurred_at: datetime


class NoticeOut(BaseModel):
    text: str
    starts_at: datetime
    ends_at: datetime
    running: bool


class CaseDetail(CaseSummary):
    household: dict[str, Any]
    description: str
    form: dict[str, Any]
    prescreen: dict[str, Any] | None = Field(description="监测线预筛提示（仅供参考）")
    submitted_by_role: str
    info_request: str | None
    info_requested_at: datetime | None
    paused_seconds: int
    stages: list[StageOut]
    field_check: dict[str, Any] | None
    notice_ends_at: datetime | None
    transferred_to_department: str | None
    attachments: list[CaseAttachmentOut]
    outcome: str | None
    decision_reason: str | None
    measures: list[dict[str, Any]] | None
    decided_at: datetime | None


class CasePage(BaseModel):
    items: list[CaseSummary]
    next_cursor: str | None
