"""Tests for the monitoring lines and the income pre-screen in shared.monitoring, and for the
shipped shared/data/monitoring_lines.toml."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from datetime import date, datetime
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from services.intake.applications.prescreen import (
    MONITORED_CATEGORIES,
    IncomeLevel,
    prescreen,
)
from shared.monitoring import (
    DEFAULT_PATH,
    MonitoringLines,
    load_monitoring_lines,
    monitoring_lines,
)

ALL_CATEGORIES = [
    "unstable_formerly_poor",
    "marginal",
    "sudden_hardship",
    "formerly_poor",
    "ordinary",
]

LINE_2022 = '\n[[lines]]\nyear = 2022\nyuan = 7000\nsource = "测试"\n'
LINE_2023 = '\n[[lines]]\nyear = 2023\nyuan = 8050\nsource = "测试"\n'


@pytest.fixture(autouse=True)
def shipped_lines(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test starts, and leaves, with the shipped file behind the cached accessor."""
    monkeypatch.delenv("RELIEF_MONITORING_LINES_PATH", raising=False)
    monitoring_lines.cache_clear()
    yield
    monitoring_lines.cache_clear()


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "monitoring_lines.toml"
    path.write_text(text, encoding="utf-8")
    return path


# --- the shipped lines ----------------------------------------------------------------------


def test_shipped_lines_are_the_published_ones() -> None:
    assert DEFAULT_PATH.is_file()
    lines = load_monitoring_lines()
    assert [(line.year, line.yuan) for line in lines.lines] == [(2022, 7000), (2023, 8050)]
    assert all(line.source for line in lines.lines)
    assert monitoring_lines() is monitoring_lines()


@pytest.mark.parametrize(
    ("on", "year", "yuan"),
    [
        (date(2022, 1, 1), 2022, 7000),
        (date(2022, 12, 31), 2022, 7000),
        (date(2023, 6, 12), 2023, 8050),
    ],
)
def test_date_in_a_published_year_uses_that_years_line(on: date, year: int, yuan: int) -> None:
    result = prescreen(Decimal(5000), "marginal", on)
    assert (result.line_year, result.line_yuan, result.line_is_current) == (year, yuan, True)
    assert "按" not in result.hint_zh  # no note about an older standard


def test_date_after_the_last_line_uses_the_latest_and_says_so() -> None:
    result = prescreen(Decimal(6200), "marginal", date(2026, 3, 1))
    assert result.line_year == 2023
    assert result.line_yuan == 8050
    assert result.line_is_current is False
    assert result.hint_zh.startswith("尚未发布2026年监测线，按2023年标准比对。")


def test_date_before_the_first_line_uses_the_earliest() -> None:
    result = prescreen(Decimal(6200), "marginal", date(2021, 7, 1))
    assert result.line_year == 2022
    assert result.line_yuan == 7000
    assert result.line_is_current is False
    assert "2021年" in result.hint_zh
    assert "按2022年标准比对" in result.hint_zh


def test_a_later_line_is_never_used_for_an_earlier_year(tmp_path: Path) -> None:
    # 2024 is missing: 2024 falls back to 2023, not forward to 2025.
    line_2025 = '\n[[lines]]\nyear = 2025\nyuan = 9999\nsource = "测试"\n'
    lines = load_monitoring_lines(_write(tmp_path, line_2025 + LINE_2023 + LINE_2022))
    result = prescreen(Decimal(6000), "ordinary", date(2024, 12, 31), lines=lines)
    assert (result.line_year, result.line_yuan, result.line_is_current) == (2023, 8050, False)
    later = prescreen(Decimal(6000), "ordinary", date(2025, 1, 1), lines=lines)
    assert (later.line_year, later.line_yuan, later.line_is_current) == (2025, 9999, True)


def test_a_datetime_is_taken_as_its_date() -> None:
    assert prescreen(Decimal(100), "ordinary", datetime(2022, 12, 31, 23, 59)).line_year == 2022


# --- levels and boundaries ------------------------------------------------------------------


def test_income_equal_to_the_line_is_not_below_it() -> None:
    at_line = prescreen(Decimal(8050), "marginal", date(2023, 5, 1))
    assert at_line.below_line is False
    assert at_line.level is IncomeLevel.NEAR_LINE
    assert at_line.ratio == Decimal("1.00")

    just_below = prescreen(Decimal("8049.99"), "marginal", date(2023, 5, 1))
    assert just_below.below_line is True
    assert just_below.level is IncomeLevel.BELOW_LINE


def test_one_and_a_half_times_the_line_is_above_line() -> None:
    on = date(2023, 5, 1)
    just_under = prescreen(Decimal("12074.99"), "ordinary", on)  # 1.5 x 8050 = 12075
    assert just_under.level is IncomeLevel.NEAR_LINE
    assert just_under.below_line is False
    at_factor = prescreen(Decimal(12075), "ordinary", on)
    assert at_factor.level is IncomeLevel.ABOVE_LINE
    assert at_factor.ratio == Decimal("1.50")
    assert prescreen(Decimal(10500), "ordinary", date(2022, 5, 1)).level is IncomeLevel.ABOVE_LINE


def test_zero_income_is_below_the_line() -> None:
    result = prescreen(Decimal(0), "sudden_hardship", date(2023, 5, 1))
    assert result.level is IncomeLevel.BELOW_LINE
    assert result.ratio == Decimal("0.00")


@pytest.mark.parametrize(
    ("income", "expected"),
    [
        (Decimal(35), "0.01"),  # 35 / 7000 = 0.005, exactly half: rounds up
        (Decimal("34.99"), "0.00"),
        (Decimal(3535), "0.51"),  # 0.505: half-up, where half-even would give 0.50
        (Decimal(3465), "0.50"),  # 0.495
        (Decimal(6200), "0.89"),  # 0.8857...
        (Decimal(7000), "1.00"),
    ],
)
def test_ratio_has_two_places_rounded_half_up(income: Decimal, expected: str) -> None:
    ratio = prescreen(income, "ordinary", date(2022, 5, 1)).ratio
    assert ratio == Decimal(expected)
    assert ratio.as_tuple().exponent == -2


@given(st.decimals(min_value=0, max_value=Decimal("1e30"), allow_nan=False, allow_infinity=False))
def test_ratio_and_percentage_are_the_exact_rational_ones(income: Decimal) -> None:
    # The definitions, in Fraction: the code computes them in integers.
    result = prescreen(income, "ordinary", date(2022, 5, 1))  # the 2022 line: 7000 yuan
    exact = Fraction(income) / 7000
    assert result.ratio == Decimal(f"{math.floor(exact * 100 + Fraction(1, 2))}E-2")
    assert f"为监测线的{math.floor(exact * 100)}%" in result.hint_zh


def test_ratio_is_exact_for_very_large_amounts() -> None:
    # Decimal division would round to 28 digits before the half-up step.
    income = Decimal("123456789012345678901234567890.5")
    result = prescreen(income, "ordinary", date(2022, 5, 1))
    assert result.ratio == Decimal("17636684144620811271604938.27")
    assert result.level is IncomeLevel.ABOVE_LINE


# --- categories -----------------------------------------------------------------------------


@pytest.mark.parametrize("category", ALL_CATEGORIES)
def test_only_the_three_categories_are_monitored(category: str) -> None:
    result = prescreen(Decimal(6200), category, date(2023, 5, 1))
    expected = category in {"unstable_formerly_poor", "marginal", "sudden_hardship"}
    assert result.monitored_category is expected
    assert (category in MONITORED_CATEGORIES) is expected
    # the category never changes the income comparison
    assert result.level is IncomeLevel.BELOW_LINE


@pytest.mark.parametrize(
    ("category", "name", "monitored"),
    [
        ("unstable_formerly_poor", "脱贫不稳定户", True),
        ("marginal", "边缘易致贫户", True),
        ("sudden_hardship", "突发严重困难户", True),
        ("formerly_poor", "脱贫户", False),
        ("ordinary", "一般农户", False),
    ],
)
def test_hint_names_the_category(category: str, name: str, monitored: bool) -> None:
    hint = prescreen(Decimal(9000), category, date(2023, 5, 1)).hint_zh
    assert name in hint
    assert ("不属于三类监测对象" in hint) is not monitored


# --- the hint -------------------------------------------------------------------------------


def test_hint_is_chinese_and_carries_the_numbers() -> None:
    hint = prescreen(Decimal(6200), "marginal", date(2023, 5, 1)).hint_zh
    assert hint == (
        "申报家庭人均纯收入6200元，低于2023年监测线8050元（为监测线的77%）。"
        "属于边缘易致贫户（三类监测对象）。"
    )
    assert re.search(r"[\u4e00-\u9fff]", hint)


@pytest.mark.parametrize(
    ("income", "phrase"),
    [
        (Decimal(8050), "不低于2023年监测线8050元，但不到监测线的1.5倍（为监测线的100%）"),
        (Decimal(13000), "已达2023年监测线8050元的1.5倍以上（为监测线的161%）"),
    ],
)
def test_hint_describes_the_level(income: Decimal, phrase: str) -> None:
    assert phrase in prescreen(income, "ordinary", date(2023, 5, 1)).hint_zh


def test_hint_percentage_never_contradicts_the_level() -> None:
    below = prescreen(Decimal(8049), "ordinary", date(2023, 5, 1))
    assert below.ratio == Decimal("1.00")  # the field rounds half-up
    assert "低于2023年监测线8050元（为监测线的99%）" in below.hint_zh
    near = prescreen(Decimal("12074.99"), "ordinary", date(2023, 5, 1))
    assert "为监测线的149%" in near.hint_zh


@pytest.mark.parametrize(
    ("income", "shown"),
    [(Decimal("6200.00"), "6200元"), (Decimal("6200.5"), "6200.50元"), (Decimal("-0"), "0元")],
)
def test_hint_shows_income_in_yuan(income: Decimal, shown: str) -> None:
    assert f"人均纯收入{shown}" in prescreen(income, "ordinary", date(2023, 5, 1)).hint_zh


def test_every_valid_input_gets_a_result() -> None:
    for category in ALL_CATEGORIES:
        for income in (Decimal(0), Decimal("0.01"), Decimal(8050), Decimal(10_000_000)):
            for on in (date(1, 1, 1), date(2023, 1, 1), date(9999, 12, 31)):
                assert prescreen(income, category, on).hint_zh


def test_prescreen_is_frozen() -> None:
    result = prescreen(Decimal(6200), "marginal", date(2023, 5, 1))
    with pytest.raises(ValidationError):
        result.level = IncomeLevel.ABOVE_LINE  # type: ignore[misc]


# --- input callers must refuse first --------------------------------------------------------


@pytest.mark.parametrize(
    "income", [Decimal("-0.01"), Decimal(-7000), Decimal("NaN"), Decimal("Infinity")]
)
def test_negative_or_non_finite_income_is_a_value_error(income: Decimal) -> None:
    with pytest.raises(ValueError, match="income per capita"):
        prescreen(income, "marginal", date(2023, 5, 1))


def test_unknown_category_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="unknown household category"):
        prescreen(Decimal(6200), "poor", date(2023, 5, 1))


# --- loading other files --------------------------------------------------------------------


def test_valid_small_file_loads_in_any_order(tmp_path: Path) -> None:
    lines = load_monitoring_lines(_write(tmp_path, LINE_2023 + LINE_2022))
    assert lines.line_for(date(2022, 6, 1)).yuan == 7000
    assert lines.line_for(date(2030, 6, 1)).yuan == 8050


def test_duplicate_years_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match=r"duplicate monitoring line years: \[2023\]"):
        load_monitoring_lines(_write(tmp_path, LINE_2022 + LINE_2023 + LINE_2023))


@pytest.mark.parametrize("yuan", ["0", "-8050", "8050.5", '"8050"', "true"])
def test_non_positive_or_non_integer_amounts_are_rejected(tmp_path: Path, yuan: str) -> None:
    bad = f'\n[[lines]]\nyear = 2024\nyuan = {yuan}\nsource = "测试"\n'
    with pytest.raises(ValidationError, match="yuan"):
        load_monitoring_lines(_write(tmp_path, LINE_2023 + bad))


@pytest.mark.parametrize("text", ["", "lines = []\n"])
def test_a_file_without_lines_is_rejected(tmp_path: Path, text: str) -> None:
    with pytest.raises(ValidationError, match="lines"):
        load_monitoring_lines(_write(tmp_path, text))


def test_a_line_without_source_or_with_unknown_keys_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="source"):
        load_monitoring_lines(_write(tmp_path, "[[lines]]\nyear = 2024\nyuan = 9000\n"))
    with pytest.raises(ValidationError, match="yaun"):
        load_monitoring_lines(_write(tmp_path, LINE_2023 + "yaun = 9000\n"))


def test_empty_model_is_rejected() -> None:
    with pytest.raises(ValidationError):
        MonitoringLines(lines=())


def test_path_env_var_overrides_the_shipped_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    line_2024 = '\n[[lines]]\nyear = 2024\nyuan = 9100\nsource = "测试"\n'
    monkeypatch.setenv("RELIEF_MONITORING_LINES_PATH", str(_write(tmp_path, LINE_2023 + line_2024)))
    assert [line.year for line in load_monitoring_lines().lines] == [2023, 2024]

    assert monitoring_lines().line_for(date(2024, 1, 1)).yuan == 9100
    result = prescreen(Decimal(9000), "marginal", date(2024, 5, 1))
    assert (result.line_year, result.line_yuan, result.line_is_current) == (2024, 9100, True)
    assert result.below_line is True

    monkeypatch.delenv("RELIEF_MONITORING_LINES_PATH")
    monitoring_lines.cache_clear()
    assert prescreen(Decimal(9000), "marginal", date(2024, 5, 1)).line_year == 2023
