from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class LoginIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=1, max_length=50)
    password: str = Field(min_length=1, max_length=200)


class StaffOut(BaseModel):
    username: str
    display_name: str
    role: str
    department: str | None
    region_code: str


class StaffTokenOut(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int
    user: StaffOut


class UserOut(StaffOut):
    """A staff account as an admin sees it. Never carries the password hash."""

    disabled: bool
    locked_until: datetime | None = Field(
        description="登录失败过多而临时锁定时，锁定到何时；未锁定为空"
    )


class UserPage(BaseModel):
    items: list[UserOut]
    next_cursor: str | None


class UserCreateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=1, max_length=50)
    password: str = Field(min_length=1, max_length=200, description="至少8位")
    role: Literal["clerk", "supervisor", "admin"]
    department: str | None = Field(default=None, max_length=40)
    region_code: str = Field(
        min_length=6,
        max_length=6,
        description="办事员为县级代码，督办人员为州市级代码，管理员为 530000",
    )
    display_name: str | None = Field(default=None, min_length=1, max_length=50)


class PasswordResetIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    password: str = Field(min_length=1, max_length=200, description="至少8位")
