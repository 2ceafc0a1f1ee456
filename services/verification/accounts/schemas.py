from __future__ import annotations

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
