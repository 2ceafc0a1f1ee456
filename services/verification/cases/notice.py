"""公示 (public notice) for the village review: who, which item, what is proposed, and how to
object. Built only from fields that may be public: never an ID number, a phone, a bank
account, the household's income or health details, or anything from the item's form."""

from __future__ import annotations

from datetime import datetime, timedelta

from services.verification.models import Case
from shared.catalog import Item

_CHINA = timedelta(hours=8)


def _date(moment: datetime) -> str:
    local = moment + _CHINA
    return f"{local.year}年{local.month}月{local.day}日"


def notice_text(case: Case, item: Item, *, starts: datetime, ends: datetime) -> str:
    household = case.household
    township = household.get("township", "")
    village = household.get("village", "")
    return (
        f"公示\n"
        f"经村民代表评议，{village}{case.applicant_name}家庭申请「{item.name}」，"
        f"拟予以认定，现予公示。\n"
        f"公示期：{_date(starts)}至{_date(ends)}（{item.public_notice_days}天）。\n"
        f"如有异议，请在公示期内向{township}人民政府或村民委员会反映。"
    )
