"""What citizens read, in plain Chinese: an SMS text, and the fields of the WeChat
subscribe-message template (each field has WeChat's own length limits)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from shared.catalog import catalog
from shared.events import Envelope, EventType

SIGNATURE = "【云南省政府救助平台】"
KINDS = {
    EventType.CASE_OPENED: "accepted",
    EventType.CASE_INFO_REQUESTED: "info_requested",
    EventType.CASE_DECIDED: "decided",
    EventType.CASE_TRANSFERRED: "transferred",
}
_MEASURES = {
    "social_security": "综合保障",
    "employment": "就业帮扶",
    "health": "健康帮扶",
    "living_conditions": "改善生活条件",
    "industry": "产业帮扶",
    "public_welfare_job": "公益岗位",
    "education": "教育帮扶",
}


def _names(item_code: str, department: str) -> tuple[str, str]:
    item = catalog().item(item_code)
    dept = catalog().department(department)
    return (item.name if item else item_code), (dept.full_name if dept else department)


def _day(moment: datetime, zone: ZoneInfo) -> str:
    local = moment.astimezone(zone)
    return f"{local.month}月{local.day}日"


def _clip(value: str, limit: int) -> str:
    return value if len(value) <= limit else value[: limit - 1] + "…"


def compose(
    envelope: Envelope, item_code: str, deadline: datetime, zone: ZoneInfo
) -> tuple[str, dict[str, Any]] | None:
    """The SMS text and the template data for an event, or None if it tells the citizen
    nothing."""
    payload = envelope.payload
    item, department = _names(item_code, envelope.department)
    when = envelope.occurred_at.astimezone(zone).strftime("%Y年%m月%d日 %H:%M")
    match envelope.type:
        case EventType.CASE_OPENED:
            status = "已受理"
            note = f"将于{_day(deadline, zone)}前办结"
            body = f"您申请的「{item}」已由{department}受理，{note}。可在小程序查看办理进度。"
        case EventType.CASE_INFO_REQUESTED:
            status = "待补充"
            message = str(payload.get("message") or "相关材料")
            note = _clip(f"请补充：{message}", 20)
            body = f"您申请的「{item}」需要补充材料：{message}。请在小程序「我的申请」中补充。"
        case EventType.CASE_DECIDED if payload.get("outcome") == "approved":
            status = "已通过"
            kinds = [_MEASURES.get(m.get("type", ""), "帮扶") for m in payload.get("measures", [])]
            measures = "、".join(dict.fromkeys(kinds))
            note = _clip(f"帮扶措施：{measures}" if measures else "审核通过", 20)
            help_line = f"帮扶措施：{measures}。" if measures else ""
            body = f"您申请的「{item}」已审核通过。{help_line}详情请在小程序查看。"
        case EventType.CASE_DECIDED:
            status = "未通过"
            reason = str(payload.get("reason") or "未说明")
            note = _clip(f"原因：{reason}", 20)
            body = f"您申请的「{item}」未通过审核，原因：{reason}。如有疑问可咨询{department}。"
        case EventType.CASE_TRANSFERRED:
            _, target = _names(item_code, str(payload.get("to_department", "")))
            status = "已转办"
            note = _clip(f"转交{target}办理", 20)
            body = f"您申请的「{item}」已转交{target}办理，办理时限不变。"
        case _:
            return None
    data = {
        "thing1": {"value": _clip(item, 20)},
        "phrase2": {"value": status},
        "thing3": {"value": note},
        "time4": {"value": when},
    }
    return SIGNATURE + body, data
