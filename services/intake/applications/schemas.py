from __future__ import annotations

import enum
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints
from pydantic_core import PydanticCustomError

from shared.identity import normalize_mobile, normalize_resident_id
from shared.regions import regions

Text50 = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=50)]


def _county_code(value: str) -> str:
    if not regions().is_county(value):
        raise PydanticCustomError("region_invalid", "地区代码不是云南省的县级行政区划代码")
    return value


class HouseholdCategory(enum.StrEnum):
    """三类监测对象 and the two other household kinds."""

    UNSTABLE_FORMERLY_POOR = "unstable_formerly_poor"  # 脱贫不稳定户
    MARGINAL = "marginal"  # 边缘易致贫户
    SUDDEN_HARDSHIP = "sudden_hardship"  # 突发严重困难户
    FORMERLY_POOR = "formerly_poor"  # 脱贫户
    ORDINARY = "ordinary"  # 一般农户


class ApplicantIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Text50
    id_number: Annotated[str, Field(max_length=30), AfterValidator(normalize_resident_id)]
    phone: Annotated[str, Field(max_length=20), AfterValidator(normalize_mobile)]


class HouseholdIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    region_code: Annotated[str, Field(pattern=r"^\d{6}$"), AfterValidator(_county_code)]
    township: Text50
    village: Text50
    address: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    size: int = Field(ge=1, le=30)
    annual_income_per_capita: Decimal = Field(ge=0, le=10_000_000, decimal_places=2)
    category: HouseholdCategory


class ApplicationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    item_code: Annotated[str, Field(min_length=1, max_length=40)]
    applicant: ApplicantIn
    household: HouseholdIn
    description: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)
    ]
    form: dict[str, Any] = Field(
        default_factory=dict, description="该事项申请表的专项内容，字段见 GET /catalog"
    )


class SupplementIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    message: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=1000)
    ] = Field(description="对工作人员所提问题的答复")
    attachment_ids: list[uuid.UUID] = Field(default_factory=list, max_length=20)


class WithdrawIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)] = ""


class RatingIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    score: int = Field(ge=1, le=5, description="1（很不满意）到 5（很满意）")
    comment: Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)] = ""


class BindingIn(BaseModel):
    """Proves who the WeChat user is, to see applications a grid worker entered for him."""

    model_config = ConfigDict(extra="forbid")

    name: Text50
    id_number: Annotated[str, Field(max_length=30), AfterValidator(normalize_resident_id)]
    phone: Annotated[str, Field(max_length=20), AfterValidator(normalize_mobile)]


class BindingOut(BaseModel):
    bound: bool
    applications: int = Field(description="现在可以查看的、为本人提交的申请数")


class ApplicationCreated(BaseModel):
    id: uuid.UUID
    status: str
    item_code: str
    department: str
    deadline: datetime
    created_at: datetime


class TimelineEntryOut(BaseModel):
    kind: str
    title: str
    detail: str | None
    occurred_at: datetime


class ApplicantOut(BaseModel):
    name: str
    id_number: str = Field(description="已脱敏")
    phone: str = Field(description="已脱敏")


class ApplicationSummary(BaseModel):
    id: uuid.UUID
    item_code: str
    item_name: str
    department: str
    status: str
    status_label: str
    outcome: str | None
    submitted_by_role: str = Field(description="citizen（本人申报）或 grid_worker（网格员代报）")
    deadline: datetime
    created_at: datetime
    updated_at: datetime


class AttachmentOut(BaseModel):
    id: uuid.UUID
    content_type: str
    size: int
    filename: str
    created_at: datetime


class ApplicationDetail(ApplicationSummary):
    applicant: ApplicantOut
    household: dict[str, Any]
    description: str
    form: dict[str, Any]
    info_request: str | None = Field(description="工作人员要求补充的内容（待补充材料时）")
    decision: dict[str, Any] | None
    rating: int | None
    attachments: list[AttachmentOut]
    timeline: list[TimelineEntryOut]


class ApplicationPage(BaseModel):
    items: list[ApplicationSummary]
    next_cursor: str | None
