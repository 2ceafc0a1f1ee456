"""监测线预筛 (monitoring-line pre-screen): declared per-capita income against the monitoring
line in force, attached to the application as a hint for clerks. It never decides anything:
identification follows the official procedure (field investigation, village review, ...)."""

from __future__ import annotations

import enum
from datetime import date
from decimal import Decimal

from pydantic import BaseModel, ConfigDict

from shared.monitoring import MonitoringLine, MonitoringLines, monitoring_lines

# 三类监测对象 (monitored categories) and the two other household kinds, by API code.
CATEGORY_NAMES_ZH: dict[str, str] = {
    "unstable_formerly_poor": "脱贫不稳定户",
    "marginal": "边缘易致贫户",
    "sudden_hardship": "突发严重困难户",
    "formerly_poor": "脱贫户",
    "ordinary": "一般农户",
}
MONITORED_CATEGORIES = frozenset({"unstable_formerly_poor", "marginal", "sudden_hardship"})


class IncomeLevel(enum.StrEnum):
    BELOW_LINE = "below_line"  # income < line
    NEAR_LINE = "near_line"  # line <= income < near_line_factor x line
    ABOVE_LINE = "above_line"  # income >= near_line_factor x line


class Prescreen(BaseModel):
    """监测线预筛 (monitoring-line pre-screen): a hint for the clerk, never a decision."""

    model_config = ConfigDict(frozen=True)

    line_year: int
    line_yuan: int
    line_is_current: bool  # the line used is that of the date's own year
    income_per_capita: Decimal
    ratio: Decimal  # income / line, two places, half-up
    below_line: bool
    monitored_category: bool  # one of the 三类
    level: IncomeLevel
    hint_zh: str


def prescreen(
    income_per_capita: Decimal,
    category: str,
    on: date,
    *,
    lines: MonitoringLines | None = None,
) -> Prescreen:
    """Compare a declared per-capita net income with the monitoring line in force on `on`.

    Raises ValueError only for input callers must already have refused: a negative or
    non-finite income, or an unknown category code.
    """
    if not income_per_capita.is_finite() or income_per_capita < 0:
        raise ValueError(f"income per capita must be a finite amount >= 0: {income_per_capita}")
    if category not in CATEGORY_NAMES_ZH:
        raise ValueError(f"unknown household category: {category!r}")
    income_per_capita = income_per_capita.copy_abs()  # -0 reads as 0
    table = lines or monitoring_lines()
    line = table.line_for(on)
    line_yuan = Decimal(line.yuan)
    factor = table.near_line_factor

    if income_per_capita < line_yuan:
        level = IncomeLevel.BELOW_LINE
    elif income_per_capita < line_yuan * factor:
        level = IncomeLevel.NEAR_LINE
    else:
        level = IncomeLevel.ABOVE_LINE
    monitored = category in MONITORED_CATEGORIES

    return Prescreen(
        line_year=line.year,
        line_yuan=line.yuan,
        line_is_current=line.year == on.year,
        income_per_capita=income_per_capita,
        ratio=_ratio_half_up(income_per_capita, line.yuan),
        below_line=level is IncomeLevel.BELOW_LINE,
        monitored_category=monitored,
        level=level,
        hint_zh=_hint(income_per_capita, category, on, line, level, factor),
    )


def _hint(
    income: Decimal,
    category: str,
    on: date,
    line: MonitoringLine,
    level: IncomeLevel,
    near_line_factor: Decimal,
) -> str:
    # The percentage is rounded down so that it never contradicts the level: 8049 yuan
    # against 8050 reads "99%", not "100%" (the `ratio` field itself is rounded half-up).
    numerator, denominator = income.as_integer_ratio()
    percent = 100 * numerator // (denominator * line.yuan)
    compared = f"{line.year}年监测线{line.yuan}元"
    factor = f"{near_line_factor:f}".rstrip("0").rstrip(".")
    position = {
        IncomeLevel.BELOW_LINE: f"低于{compared}",
        IncomeLevel.NEAR_LINE: f"不低于{compared}，但不到监测线的{factor}倍",
        IncomeLevel.ABOVE_LINE: f"已达{compared}的{factor}倍以上",
    }[level]
    parts = []
    if line.year != on.year:
        missing = "尚未发布" if line.year < on.year else "未录入"
        parts.append(f"{missing}{on.year}年监测线，按{line.year}年标准比对。")
    parts.append(f"申报家庭人均纯收入{_yuan(income)}元，{position}（为监测线的{percent}%）。")
    name = CATEGORY_NAMES_ZH[category]
    if category in MONITORED_CATEGORIES:
        parts.append(f"属于{name}（三类监测对象）。")
    else:
        parts.append(f"申报类别为{name}，不属于三类监测对象。")
    return "".join(parts)


def _ratio_half_up(income: Decimal, line_yuan: int) -> Decimal:
    # Exact arithmetic on the income's integer ratio n/d: Decimal division would round to
    # the context's 28 digits first (and quantize fails on very large amounts), so a ratio
    # could be rounded twice. floor(100n / (d·line) + 1/2), in integers (Fraction gave the
    # same, at five times the cost, on the busiest request).
    numerator, denominator = income.as_integer_ratio()
    divisor = denominator * line_yuan
    hundredths = (200 * numerator + divisor) // (2 * divisor)
    return Decimal(f"{hundredths}E-2")


def _yuan(amount: Decimal) -> str:
    """6200 -> "6200", 6200.5 -> "6200.50"; finer amounts are shown as given."""
    numerator, denominator = amount.as_integer_ratio()
    if 100 * numerator % denominator == 0:  # whole cents
        return f"{amount:.0f}" if numerator % denominator == 0 else f"{amount:.2f}"
    return f"{amount:f}"
