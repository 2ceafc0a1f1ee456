"""Yunnan province administrative divisions (GB/T 2260 codes).

The shipped data file ``shared/data/regions_yunnan.csv`` lists the province,
its 16 prefecture-level divisions and its 129 county-level divisions. This
module loads and validates that file and offers a few lookups over it. It
holds no business rules.
"""

from __future__ import annotations

import csv
import functools
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "COUNTY",
    "LEVELS",
    "PREFECTURE",
    "PROVINCE",
    "Region",
    "RegionTable",
    "load_regions",
    "regions",
]

PROVINCE = "province"
PREFECTURE = "prefecture"
COUNTY = "county"
LEVELS: frozenset[str] = frozenset({PROVINCE, PREFECTURE, COUNTY})

_PROVINCE_PREFIX = "53"
_HEADER = ("code", "name", "level", "parent_code")
_DEFAULT_PATH = Path(__file__).resolve().parent / "data" / "regions_yunnan.csv"


@dataclass(frozen=True, slots=True)
class Region:
    """One administrative division."""

    code: str
    name: str
    level: str
    parent_code: str | None


@dataclass(frozen=True, slots=True, eq=False)
class RegionTable:
    """The validated set of divisions of one province, indexed by code."""

    province: Region
    prefectures: dict[str, Region]
    counties: dict[str, Region]

    def is_county(self, code: str) -> bool:
        """Return whether ``code`` is a known county-level division."""
        return code in self.counties

    def is_prefecture(self, code: str) -> bool:
        """Return whether ``code`` is a known prefecture-level division."""
        return code in self.prefectures

    def get(self, code: str) -> Region:
        """Return the division with ``code`` at any level; raise KeyError if unknown."""
        if code == self.province.code:
            return self.province
        region = self.prefectures.get(code) or self.counties.get(code)
        if region is None:
            raise KeyError(f"unknown region code: {code!r}")
        return region

    def prefecture_of(self, county_code: str) -> Region:
        """Return the prefecture a county belongs to; raise KeyError if not a known county."""
        county = self.counties.get(county_code)
        if county is None:
            raise KeyError(f"unknown county code: {county_code!r}")
        parent = self.prefectures.get(county.parent_code or "")
        if parent is None:
            # Unreachable for tables built by load_regions, which checks every parent.
            raise KeyError(f"county {county_code!r} has no known prefecture")
        return parent

    def full_name(self, code: str) -> str:
        """Return the name joined with its ancestors', e.g. "云南省大理白族自治州大理市".

        Raises KeyError if ``code`` is unknown.
        """
        parts: list[str] = []
        region: Region | None = self.get(code)
        while region is not None:
            parts.append(region.name)
            region = self.get(region.parent_code) if region.parent_code else None
        return "".join(reversed(parts))

    def county_in_scope(self, county_code: str, scope_code: str) -> bool:
        """Return whether a county lies within a scope.

        ``scope_code`` may be the province code (every county is in scope), a
        prefecture code (its own counties are in scope) or a county code (only
        that county is in scope). Unknown county or scope codes yield False.
        """
        county = self.counties.get(county_code)
        if county is None:
            return False
        if scope_code == self.province.code:
            return True
        if scope_code in self.prefectures:
            return county.parent_code == scope_code
        return scope_code == county_code


def _fail(path: Path, line: int, message: str) -> ValueError:
    return ValueError(f"{path}:{line}: {message}")


def _parse_row(source: Path, line: int, row: list[str]) -> Region:
    """Check one data row's own fields and turn it into a Region."""
    if len(row) != len(_HEADER):
        raise _fail(source, line, f"expected {len(_HEADER)} columns, got {len(row)}")
    code, name, level, parent = (cell.strip() for cell in row)
    if len(code) != 6 or not code.isascii() or not code.isdigit():
        raise _fail(source, line, f"code {code!r} is not 6 digits")
    if not code.startswith(_PROVINCE_PREFIX):
        raise _fail(source, line, f"code {code!r} does not start with {_PROVINCE_PREFIX}")
    if not name:
        raise _fail(source, line, f"code {code} has an empty name")
    if level not in LEVELS:
        expected = ", ".join(sorted(LEVELS))
        raise _fail(source, line, f"code {code} has invalid level {level!r} (expected {expected})")
    return Region(code=code, name=name, level=level, parent_code=parent or None)


def _read_rows(source: Path) -> list[tuple[int, Region]]:
    """Read the file, returning each region with its line number; codes must be unique."""
    rows: list[tuple[int, Region]] = []
    seen: dict[str, int] = {}
    with source.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None or tuple(cell.strip() for cell in header) != _HEADER:
            raise _fail(source, 1, f"header must be {','.join(_HEADER)!r}, got {header!r}")
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            line = reader.line_num
            region = _parse_row(source, line, row)
            if region.code in seen:
                message = f"duplicate code {region.code} (first on line {seen[region.code]})"
                raise _fail(source, line, message)
            seen[region.code] = line
            rows.append((line, region))
    return rows


def _build_table(source: Path, rows: list[tuple[int, Region]]) -> RegionTable:
    """Check the parent links between rows and index them by level."""
    provinces = [(line, region) for line, region in rows if region.level == PROVINCE]
    if len(provinces) != 1:
        raise ValueError(f"{source}: expected exactly one province row, found {len(provinces)}")
    province_line, province = provinces[0]
    if province.parent_code is not None:
        raise _fail(source, province_line, f"province {province.code} must have no parent")

    prefectures: dict[str, Region] = {}
    for line, region in rows:
        if region.level != PREFECTURE:
            continue
        if region.parent_code != province.code:
            message = (
                f"prefecture {region.code} has parent {region.parent_code!r}; "
                f"expected the province {province.code}"
            )
            raise _fail(source, line, message)
        prefectures[region.code] = region

    counties: dict[str, Region] = {}
    for line, region in rows:
        if region.level != COUNTY:
            continue
        parent = region.parent_code
        if parent is None or parent not in prefectures:
            message = f"county {region.code} has parent {parent!r}, not a prefecture in the file"
            raise _fail(source, line, message)
        if region.code[:4] != parent[:4]:
            message = f"county {region.code} does not share the first 4 digits of parent {parent}"
            raise _fail(source, line, message)
        counties[region.code] = region

    return RegionTable(province=province, prefectures=prefectures, counties=counties)


def load_regions(path: Path | None = None) -> RegionTable:
    """Load and validate a regions CSV file (the shipped one by default).

    The file must be UTF-8 with the header ``code,name,level,parent_code``.
    Checks: codes are unique, 6 digits and start with "53"; names are not
    empty; levels are province, prefecture or county; there is exactly one
    province with no parent; every prefecture's parent is the province; every
    county's parent is a prefecture in the file and shares its first 4 digits.
    Raises ValueError naming the file, line and reason of the first violation.
    """
    source = path if path is not None else _DEFAULT_PATH
    return _build_table(source, _read_rows(source))


@functools.cache
def regions() -> RegionTable:
    """Return the shipped Yunnan table, loaded once."""
    return load_regions()
