"""防返贫监测线 (monitoring lines), loaded from `shared/data/monitoring_lines.toml` (or
`RELIEF_MONITORING_LINES_PATH`) and validated at start: the province sets a new line every
year, so it is data, not code. Intake's pre-screen compares declared incomes with them.
"""

from __future__ import annotations

import os
import tomllib
from datetime import date
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

DEFAULT_PATH = Path(__file__).parent / "data" / "monitoring_lines.toml"


class MonitoringLine(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    year: int = Field(strict=True, ge=2000, le=2100)
    yuan: int = Field(strict=True, gt=0)
    source: str = Field(min_length=1)


class MonitoringLines(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    lines: tuple[MonitoringLine, ...] = Field(min_length=1)
    # Households somewhat above the line are watched too (监测范围 may reach above the
    # provincial line); how far is the data file's choice.
    near_line_factor: Decimal = Field(default=Decimal("1.5"), ge=1, le=5)

    _by_year: tuple[MonitoringLine, ...] = PrivateAttr(default=())

    def model_post_init(self, context: Any, /) -> None:
        self._by_year = tuple(sorted(self.lines, key=lambda line: line.year))

    @model_validator(mode="after")
    def _unique_years(self) -> Self:
        years = [line.year for line in self.lines]
        duplicates = {y for y in years if years.count(y) > 1}
        if duplicates:
            raise ValueError(f"duplicate monitoring line years: {sorted(duplicates)}")
        return self

    def line_for(self, on: date) -> MonitoringLine:
        """The line of `on.year` if published, else the latest one before it (never a later
        year's); a date before every line gets the earliest."""
        earlier = [line for line in self._by_year if line.year <= on.year]
        return earlier[-1] if earlier else self._by_year[0]


def load_monitoring_lines(path: Path | None = None) -> MonitoringLines:
    path = path or Path(os.environ.get("RELIEF_MONITORING_LINES_PATH") or DEFAULT_PATH)
    with path.open("rb") as fh:
        return MonitoringLines.model_validate(tomllib.load(fh))


@cache
def monitoring_lines() -> MonitoringLines:
    return load_monitoring_lines()
