"""Application forms (申请表): check a citizen's answers against an item's form spec.

Plumbing only: the spec is data (`Item.fields`, loaded from the catalog); nothing here knows
what any item is about. `validate_form` returns the answers normalised and JSON-ready, or raises
`InvalidInput` listing every problem at once, each under `form.<field name>` with a stable code
and a Chinese message naming the question, so the mini-program can mark each one.

Normalised values: strings stripped (text keeps its line breaks, as "\\n"), integers as int,
decimals as strings with exactly `max_decimal_places` places, dates as "YYYY-MM-DD", booleans as
bool, choices as their value code. An optional question left empty (absent, null or blank) is
left out of the result.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable, Mapping
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal, localcontext
from typing import Any

from shared.catalog import (
    DECIMAL_LIMIT,
    INTEGER_LIMIT,
    TODAY,
    FieldType,
    FormField,
    Item,
    catalog,
    decimal_places,
)
from shared.errors import InvalidInput

FORM_INVALID_CODE = "form_invalid"
FORM_INVALID_MESSAGE = "申请表填写有误，请检查标出的项目"

# Stable codes of the problems, as they appear in `details[].code`.
REQUIRED = "form_field_required"
UNKNOWN = "form_field_unknown"
TYPE = "form_field_type"
CHARACTERS = "form_field_characters"
TOO_LONG = "form_field_too_long"
TOO_SHORT = "form_field_too_short"
TOO_SMALL = "form_field_too_small"
TOO_LARGE = "form_field_too_large"
DECIMAL_PLACES = "form_field_decimal_places"
CHOICE = "form_field_choice"
DATE = "form_field_date"
DATE_RANGE = "form_field_date_range"
FORM_TYPE = "form_type"  # the form is not an object at all

# China has one time zone and no daylight saving: "today" is today in Beijing time, also on a
# server that runs in UTC.
CHINA_TZ = timezone(timedelta(hours=8), "Asia/Shanghai")

# Longest numeric string considered at all; anything longer is not a number a person typed.
_MAX_NUMBER_CHARS = 40
_INTEGER = re.compile(r"[+-]?[0-9]+", re.ASCII)
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)", re.ASCII)
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", re.ASCII)
_TRUE = frozenset({"true"})
_FALSE = frozenset({"false"})


def china_today() -> date:
    return datetime.now(CHINA_TZ).date()


class _Problem(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(code)
        self.code = code
        self.message = message


def validate_form(
    item: Item, data: Mapping[str, Any] | None, *, today: date | None = None
) -> dict[str, Any]:
    """The answers to `item`'s form, normalised; or `InvalidInput` listing every problem.

    `today` resolves `max_date = "today"`; it defaults to the current date in China.
    """
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise _invalid(
            [{"field": "form", "code": FORM_TYPE, "message": "申请表格式有误，请重新填写"}]
        )
    today = today or china_today()

    details: list[dict[str, str]] = []
    values: dict[str, Any] = {}
    for spec in item.fields:
        raw = data.get(spec.name)
        if _blank(raw):
            if spec.required:
                details.append(_detail(spec.name, REQUIRED, _required_message(spec)))
            continue
        try:
            values[spec.name] = _CHECKS[spec.type](spec, raw, today)
        except _Problem as problem:
            details.append(_detail(spec.name, problem.code, problem.message))

    known = {spec.name for spec in item.fields}
    for key in data:
        if key not in known:
            details.append(_detail(str(key), UNKNOWN, "申请表中没有这一项，请刷新后重新填写"))

    if details:
        raise _invalid(details)
    return values


def form_schema(item: Item) -> list[dict[str, Any]]:
    """The form as the mini-program renders it: one JSON object per question, in order.

    Every object has name, label, type, required and help; then the bounds of its type:
    string/text: min_length, max_length; integer: min, max (numbers), unit; decimal: min, max
    (strings), max_decimal_places, unit; date: min_date, max_date ("YYYY-MM-DD", max_date may be
    "today": the client's own date); choice: choices [{value, label}]. Unset bounds are null.
    """
    return [_field_schema(spec) for spec in item.fields]


def _field_schema(spec: FormField) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": spec.name,
        "label": spec.label,
        "type": spec.type.value,
        "required": spec.required,
        "help": spec.help,
    }
    match spec.type:
        case FieldType.STRING | FieldType.TEXT:
            out.update(min_length=spec.min_length, max_length=spec.max_length)
        case FieldType.INTEGER:
            out.update(min=spec.min, max=spec.max, unit=spec.unit)
        case FieldType.DECIMAL:
            out.update(
                min=None if spec.min is None else _plain(Decimal(spec.min)),
                max=None if spec.max is None else _plain(Decimal(spec.max)),
                max_decimal_places=spec.max_decimal_places,
                unit=spec.unit,
            )
        case FieldType.DATE:
            out.update(
                min_date=None if spec.min_date is None else spec.min_date.isoformat(),
                max_date=(
                    spec.max_date.isoformat()
                    if isinstance(spec.max_date, date)
                    else spec.max_date  # None or "today"
                ),
            )
        case FieldType.CHOICE:
            out["choices"] = [{"value": c.value, "label": c.label} for c in spec.choices or ()]
    return out


# --- checks, one per field type: return the normalised value or raise _Problem -------------


def _check_string(spec: FormField, raw: Any, today: date) -> str:
    if not isinstance(raw, str):
        raise _Problem(TYPE, f"「{spec.label}」应填写文字")
    multiline = spec.type == FieldType.TEXT
    value = raw.replace("\r\n", "\n").replace("\r", "\n").strip() if multiline else raw.strip()
    allowed = {"\n", "\t"} if multiline else set()
    if any(_unreadable(ch) and ch not in allowed for ch in value):
        reason = "含有无法识别的字符" if multiline or not _has_line_break(value) else "不能换行"
        raise _Problem(CHARACTERS, f"「{spec.label}」{reason}")
    if spec.max_length is not None and len(value) > spec.max_length:
        raise _Problem(TOO_LONG, f"「{spec.label}」最多填写{spec.max_length}个字")
    if spec.min_length is not None and len(value) < spec.min_length:
        raise _Problem(TOO_SHORT, f"「{spec.label}」至少填写{spec.min_length}个字")
    return value


def _check_integer(spec: FormField, raw: Any, today: date) -> int:
    value = _to_integer(raw)
    if value is None:
        raise _Problem(TYPE, f"「{spec.label}」应填写整数")
    low = -INTEGER_LIMIT if spec.min is None else spec.min
    high = INTEGER_LIMIT if spec.max is None else spec.max
    _check_range(spec, value, low, high)
    return value


def _check_decimal(spec: FormField, raw: Any, today: date) -> str:
    value = _to_decimal(raw)
    if value is None:
        raise _Problem(TYPE, f"「{spec.label}」应填写数字")
    places = spec.max_decimal_places or 0
    if decimal_places(value) > places:
        if places == 0:
            raise _Problem(DECIMAL_PLACES, f"「{spec.label}」应填写整数，不要带小数")
        raise _Problem(DECIMAL_PLACES, f"「{spec.label}」最多保留{places}位小数")
    low = -DECIMAL_LIMIT if spec.min is None else spec.min
    high = DECIMAL_LIMIT if spec.max is None else spec.max
    _check_range(spec, value, low, high)
    with localcontext() as context:
        # Exact: the value is bounded and has no more than `places` places.
        context.prec = 60
        fixed = value.quantize(Decimal(1).scaleb(-places))
    if fixed.is_zero():
        fixed = abs(fixed)  # no "-0.00"
    return f"{fixed:f}"


def _check_range(
    spec: FormField, value: int | Decimal, low: int | Decimal, high: int | Decimal
) -> None:
    unit = spec.unit or ""
    if value < low:
        raise _Problem(TOO_SMALL, f"「{spec.label}」不能小于{_plain(low)}{unit}")
    if value > high:
        raise _Problem(TOO_LARGE, f"「{spec.label}」不能大于{_plain(high)}{unit}")


def _check_date(spec: FormField, raw: Any, today: date) -> str:
    value = _to_date(raw)
    if value is None:
        raise _Problem(DATE, f"「{spec.label}」日期不正确，请按“年-月-日”填写，如2024-05-01")
    if spec.min_date is not None and value < spec.min_date:
        raise _Problem(DATE_RANGE, f"「{spec.label}」不能早于{_chinese_date(spec.min_date)}")
    if spec.max_date is not None:
        latest = today if spec.max_date == TODAY else spec.max_date
        assert isinstance(latest, date)
        if value > latest:
            when = "今天" if spec.max_date == TODAY else _chinese_date(latest)
            raise _Problem(DATE_RANGE, f"「{spec.label}」不能晚于{when}")
    return value.isoformat()


def _check_boolean(spec: FormField, raw: Any, today: date) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str):
        word = raw.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
    raise _Problem(TYPE, f"「{spec.label}」请选择“是”或“否”")


def _check_choice(spec: FormField, raw: Any, today: date) -> str:
    if isinstance(raw, str) and raw.strip() in spec.choice_values():
        return raw.strip()
    raise _Problem(CHOICE, f"「{spec.label}」请从给出的选项中选择")


_CHECKS: dict[FieldType, Callable[[FormField, Any, date], Any]] = {
    FieldType.STRING: _check_string,
    FieldType.TEXT: _check_string,
    FieldType.INTEGER: _check_integer,
    FieldType.DECIMAL: _check_decimal,
    FieldType.DATE: _check_date,
    FieldType.BOOLEAN: _check_boolean,
    FieldType.CHOICE: _check_choice,
}


# --- conversions: None when the input is not of the kind at all ----------------------------


def _to_integer(raw: Any) -> int | None:
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return raw
    if isinstance(raw, float):
        return int(raw) if math.isfinite(raw) and raw.is_integer() else None
    if isinstance(raw, Decimal):
        return int(raw) if raw.is_finite() and raw == raw.to_integral_value() else None
    if isinstance(raw, str):
        text = _number_text(raw)
        if text is not None and _INTEGER.fullmatch(text):
            return int(text)
    return None


def _to_decimal(raw: Any) -> Decimal | None:
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return Decimal(raw)
    if isinstance(raw, float):
        # repr() is the shortest text that reads back as this float: 0.1, not 0.1000000000000000055
        return Decimal(repr(raw)) if math.isfinite(raw) else None
    if isinstance(raw, Decimal) and raw.is_finite():
        return raw
    if isinstance(raw, str):
        text = _number_text(raw)
        if text is not None and _DECIMAL.fullmatch(text):
            return Decimal(text)  # the pattern admits only plain finite numbers
    return None


def _number_text(raw: str) -> str | None:
    # Chinese input methods may type full-width digits (１２３．５): read them as digits.
    text = unicodedata.normalize("NFKC", raw).strip()
    return text if len(text) <= _MAX_NUMBER_CHARS else None


def _to_date(raw: Any) -> date | None:
    if isinstance(raw, datetime):
        return None
    if isinstance(raw, date):
        return raw
    if isinstance(raw, str):
        text = unicodedata.normalize("NFKC", raw).strip()
        if _ISO_DATE.fullmatch(text):
            try:
                return date.fromisoformat(text)
            except ValueError:  # e.g. 2023-02-30
                return None
    return None


# --- helpers -------------------------------------------------------------------------------


def _blank(raw: Any) -> bool:
    return raw is None or (isinstance(raw, str) and not raw.strip())


def _unreadable(ch: str) -> bool:
    """Control characters and lone surrogates: they cannot be stored (PostgreSQL refuses
    \\u0000 in JSON and text) or shown, and nobody types them."""
    return unicodedata.category(ch) in {"Cc", "Cs"}


def _has_line_break(text: str) -> bool:
    return "\n" in text or "\r" in text


def _plain(number: int | Decimal) -> str:
    """A bound as a citizen reads it: 10000000, 0.5; never 1E+7."""
    if isinstance(number, int):
        return str(number)
    text = f"{number:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _chinese_date(day: date) -> str:
    return f"{day.year}年{day.month}月{day.day}日"


def _required_message(spec: FormField) -> str:
    verb = "选择" if spec.type in {FieldType.CHOICE, FieldType.BOOLEAN, FieldType.DATE} else "填写"
    return f"请{verb}「{spec.label}」"


def _detail(name: str, code: str, message: str) -> dict[str, str]:
    return {"field": f"form.{name}", "code": code, "message": message}


def _invalid(details: list[dict[str, str]]) -> InvalidInput:
    return InvalidInput(FORM_INVALID_MESSAGE, code=FORM_INVALID_CODE, details=details)


def sample_form(item_code: str) -> dict[str, Any]:
    """A valid form for any catalog item, derived from its field specs (the required fields):
    for examples, tests, load tests and benchmarks."""
    item = catalog().item(item_code)
    assert item is not None, item_code
    form: dict[str, Any] = {}
    for spec in item.fields:
        if not spec.required:
            continue
        match spec.type:
            case "string" | "text":
                form[spec.name] = "测试内容"
            case "integer":
                form[spec.name] = int(spec.min) if spec.min is not None else 1
            case "decimal":
                form[spec.name] = str(spec.min if spec.min is not None else "100.00")
            case "date":
                form[spec.name] = "2026-01-15"
            case "boolean":
                form[spec.name] = False
            case "choice":
                assert spec.choices
                form[spec.name] = spec.choices[0].value
    return form
