from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class WechatLogin(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(min_length=1, max_length=128, description="wx.login 返回的 code")


class TokenOut(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int
