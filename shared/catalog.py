"""The benefit catalog (惠民事项目录): departments, items, their review stages and forms.

Loaded from `shared/data/catalog.toml` (or `RELIEF_CATALOG_PATH`) and validated at start; a
catalog that does not hold together stops the service instead of failing later.

Each item carries the spec of its application form (申请表): a tuple of `FormField`s. The spec
is checked here, when the catalog loads; `shared.forms` validates a citizen's answers against it.
"""

from __future__ import annotations

import enum
import os
import tomllib
from datetime import date
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)

DEFAULT_PATH = Path(__file__).parent / "data" / "catalog.toml"


class Stage(enum.StrEnum):
    """Review stages of the official procedure, in order."""

    FIELD_CHECK = "field_check"  # 实地调查
    VILLAGE_REVIEW = "village_review"  # 村评议公示
    TOWNSHIP_AUDIT = "township_audit"  # 乡镇审核
    COUNTY_DECISION = "county_decision"  # 县级确定


STAGE_ORDER = list(Stage)
_CODE_PATTERN = r"^[a-z][a-z0-9_]{1,39}$"


class FieldType(enum.StrEnum):
    """Kinds of form field the mini-program knows how to render."""

    STRING = "string"  # one line of text
    TEXT = "text"  # several lines of text
    INTEGER = "integer"
    DECIMAL = "decimal"  # amounts of money and the like; sent back as a string
    DATE = "date"  # ISO 8601 calendar date, YYYY-MM-DD
    BOOLEAN = "boolean"  # yes / no
    CHOICE = "choice"  # one of a fixed list of options


# Defaults and hard limits of the form spec.
DEFAULT_MAX_LENGTH = {FieldType.STRING: 100, FieldType.TEXT: 2000}
MAX_LENGTH_LIMIT = {FieldType.STRING: 500, FieldType.TEXT: 5000}
DEFAULT_DECIMAL_PLACES = 2
MAX_DECIMAL_PLACES = 6
# Integers travel to a JavaScript client as numbers: keep them exact there.
INTEGER_LIMIT = 2**53 - 1
# Decimals travel as strings, but keep them to a sane size all the same.
DECIMAL_LIMIT = Decimal(10) ** 15
TODAY = "today"

_LENGTH_TYPES = frozenset({FieldType.STRING, FieldType.TEXT})
_NUMBER_TYPES = frozenset({FieldType.INTEGER, FieldType.DECIMAL})


class Choice(BaseModel):
    """One option of a choice field: a stable code and the words the citizen sees."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    value: str = Field(pattern=_CODE_PATTERN)
    label: str = Field(min_length=1, max_length=40)


class FormField(BaseModel):
    """One question of an item's application form.

    Which attributes apply depends on `type`; the others must stay unset. Defaults are filled
    in at load (`max_length` for string and text, `max_decimal_places` for decimal), so the
    model always holds the limits that are enforced.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=_CODE_PATTERN)
    label: str = Field(min_length=1, max_length=40)
    type: FieldType
    required: bool = False
    help: str | None = Field(default=None, min_length=1, max_length=200)
    unit: str | None = Field(default=None, min_length=1, max_length=10)  # e.g. 元, 人, 户
    # string, text
    min_length: int | None = Field(default=None, ge=1)
    max_length: int | None = Field(default=None, ge=1)
    # integer (int bounds), decimal (Decimal bounds)
    min: int | Decimal | None = None
    max: int | Decimal | None = None
    max_decimal_places: int | None = Field(default=None, ge=0, le=MAX_DECIMAL_PLACES)
    # choice
    choices: tuple[Choice, ...] | None = None
    # date
    min_date: date | None = None
    max_date: date | Literal["today"] | None = None

    @model_validator(mode="before")
    @classmethod
    def _fill_defaults(cls, data: Any) -> Any:
        kind = data.get("type") if isinstance(data, dict) else None
        if not isinstance(kind, str):
            return data  # let field validation report it
        filled = dict(data)
        if kind in DEFAULT_MAX_LENGTH:
            filled.setdefault("max_length", DEFAULT_MAX_LENGTH[FieldType(kind)])
        if kind == FieldType.DECIMAL:
            filled.setdefault("max_decimal_places", DEFAULT_DECIMAL_PLACES)
        return filled

    @field_validator("min", "max", mode="before")
    @classmethod
    def _no_boolean_bound(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("a bound must be a number, not a boolean")
        return value

    @field_validator("min", "max")
    @classmethod
    def _bound_matches_type(cls, value: int | Decimal | None, info: ValidationInfo) -> Any:
        """Integer fields get int bounds, decimal fields Decimal bounds."""
        if value is None:
            return None
        if isinstance(value, Decimal) and not value.is_finite():
            raise ValueError(f"{info.field_name} must be a finite number")
        kind = info.data.get("type")
        if kind == FieldType.DECIMAL:
            return Decimal(value)
        if kind == FieldType.INTEGER and isinstance(value, Decimal):
            if value != value.to_integral_value():
                raise ValueError(f"{info.field_name} of an integer field must be a whole number")
            return int(value)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        kind = self.type
        self._only_for(_LENGTH_TYPES, "min_length", "max_length")
        self._only_for(_NUMBER_TYPES, "min", "max", "unit")
        self._only_for({FieldType.DECIMAL}, "max_decimal_places")
        self._only_for({FieldType.CHOICE}, "choices")
        self._only_for({FieldType.DATE}, "min_date", "max_date")

        if kind in _LENGTH_TYPES:
            assert self.max_length is not None  # filled in by _fill_defaults
            if self.max_length > MAX_LENGTH_LIMIT[kind]:
                raise ValueError(
                    f"max_length of a {kind} field is at most {MAX_LENGTH_LIMIT[kind]}"
                )
            if self.min_length is not None and self.min_length > self.max_length:
                raise ValueError(
                    f"min_length {self.min_length} exceeds max_length {self.max_length}"
                )
        if kind in _NUMBER_TYPES:
            self._check_number_bounds()
        if kind == FieldType.CHOICE:
            self._check_choices()
        if (
            isinstance(self.min_date, date)
            and isinstance(self.max_date, date)
            and self.min_date > self.max_date
        ):
            raise ValueError(f"min_date {self.min_date} is after max_date {self.max_date}")
        return self

    def _only_for(self, types: frozenset[FieldType] | set[FieldType], *attributes: str) -> None:
        if self.type in types:
            return
        for attribute in attributes:
            if getattr(self, attribute) is not None:
                allowed = " and ".join(sorted(t.value for t in types))
                raise ValueError(f"{attribute} applies only to {allowed} fields, not {self.type}")

    def _check_number_bounds(self) -> None:
        limit = INTEGER_LIMIT if self.type == FieldType.INTEGER else DECIMAL_LIMIT
        for attribute in ("min", "max"):
            bound = getattr(self, attribute)
            if bound is not None and not -limit <= bound <= limit:
                raise ValueError(f"{attribute} {bound} is beyond the limit of ±{limit}")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} exceeds max {self.max}")
        if self.type == FieldType.DECIMAL:
            places = self.max_decimal_places
            assert places is not None  # filled in by _fill_defaults
            for attribute in ("min", "max"):
                bound = getattr(self, attribute)
                if bound is not None and decimal_places(bound) > places:
                    raise ValueError(f"{attribute} {bound} has more than {places} decimal places")

    def _check_choices(self) -> None:
        if not self.choices or len(self.choices) < 2:
            raise ValueError("a choice field needs at least two choices")
        for attribute in ("value", "label"):
            seen = [getattr(c, attribute) for c in self.choices]
            duplicates = sorted({v for v in seen if seen.count(v) > 1})
            if duplicates:
                raise ValueError(f"duplicate choice {attribute}s: {duplicates}")

    def choice_values(self) -> tuple[str, ...]:
        return tuple(c.value for c in self.choices or ())


def decimal_places(value: Decimal) -> int:
    """Significant decimal places: 1.50 has one. Exact, unlike `Decimal.normalize()`,
    which rounds to the context's precision."""
    _sign, digits, exponent = value.as_tuple()
    if not isinstance(exponent, int) or exponent >= 0:
        return 0
    trailing_zeros = len(digits) - len("".join(map(str, digits)).rstrip("0"))
    return max(0, -exponent - trailing_zeros)


class Department(BaseModel):
    model_config = ConfigDict(frozen=True)

    code: str = Field(pattern=_CODE_PATTERN)
    name: str = Field(min_length=1)
    full_name: str = Field(min_length=1)


class Item(BaseModel):
    # Unknown keys are refused: a misspelt `[[items.field]]` must not drop a form silently.
    model_config = ConfigDict(frozen=True, extra="forbid")

    code: str = Field(pattern=_CODE_PATTERN)
    department: str
    name: str = Field(min_length=1)
    deadline_days: int | None = Field(default=None, ge=1, le=90)
    stages: tuple[Stage, ...] = Field(min_length=1)
    public_notice_days: int | None = Field(default=None, ge=1, le=30)
    fields: tuple[FormField, ...] = ()

    @field_validator("fields", mode="wrap")
    @classmethod
    def _name_item_and_field(
        cls, value: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo
    ) -> Any:
        """Re-raise a bad field spec with the item's code and the field's name in front."""
        try:
            return handler(value)
        except ValidationError as exc:
            code = info.data.get("code", "?")
            problems = "; ".join(_field_problem(value, error) for error in exc.errors())
            raise ValueError(f"item {code}: {problems}") from None

    @model_validator(mode="after")
    def _unique_field_names(self) -> Self:
        names = [f.name for f in self.fields]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"item {self.code}: duplicate form field names: {duplicates}")
        return self

    def field(self, name: str) -> FormField | None:
        return next((f for f in self.fields if f.name == name), None)

    @model_validator(mode="after")
    def _stages_in_order(self) -> Self:
        positions = [STAGE_ORDER.index(stage) for stage in self.stages]
        if positions != sorted(set(positions)):
            raise ValueError(f"item {self.code}: stages must be distinct and in procedural order")
        has_review = Stage.VILLAGE_REVIEW in self.stages
        if has_review != (self.public_notice_days is not None):
            raise ValueError(
                f"item {self.code}: public_notice_days goes with, and only with, village_review"
            )
        return self


def _field_problem(fields: Any, error: Any) -> str:
    """One pydantic error inside an item's `fields`, phrased as "field <name>: <problem>"."""
    loc = list(error.get("loc", ()))
    where = "fields"
    if loc and isinstance(loc[0], int):
        index = loc.pop(0)
        name = None
        if isinstance(fields, list | tuple) and 0 <= index < len(fields):
            spec = fields[index]
            name = spec.get("name") if isinstance(spec, dict) else getattr(spec, "name", None)
        where = f"field {name}" if isinstance(name, str) else f"field #{index + 1}"
    if loc:
        where += " (" + ".".join(str(part) for part in loc) + ")"
    context = error.get("ctx") or {}
    message = str(context["error"]) if error.get("type") == "value_error" else error.get("msg")
    return f"{where}: {message}"


class Catalog(BaseModel):
    model_config = ConfigDict(frozen=True)

    version: str
    default_deadline_days: int = Field(ge=1, le=90)
    departments: tuple[Department, ...] = Field(min_length=1)
    items: tuple[Item, ...] = Field(min_length=1)

    _items_by_code: dict[str, Item] = PrivateAttr(default_factory=dict)
    _departments_by_code: dict[str, Department] = PrivateAttr(default_factory=dict)

    def model_post_init(self, context: Any, /) -> None:
        self._items_by_code.update((i.code, i) for i in self.items)
        self._departments_by_code.update((d.code, d) for d in self.departments)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        dept_codes = [d.code for d in self.departments]
        item_codes = [i.code for i in self.items]
        for kind, codes in (("department", dept_codes), ("item", item_codes)):
            duplicates = {c for c in codes if codes.count(c) > 1}
            if duplicates:
                raise ValueError(f"duplicate {kind} codes: {sorted(duplicates)}")
        for item in self.items:
            if item.department not in dept_codes:
                raise ValueError(f"item {item.code}: unknown department {item.department}")
        return self

    def item(self, code: str) -> Item | None:
        return self._items_by_code.get(code)

    def department(self, code: str) -> Department | None:
        return self._departments_by_code.get(code)

    def deadline_days(self, item: Item) -> int:
        return item.deadline_days or self.default_deadline_days

    def department_codes(self) -> list[str]:
        return [d.code for d in self.departments]


def load_catalog(path: Path | None = None) -> Catalog:
    path = path or Path(os.environ.get("RELIEF_CATALOG_PATH") or DEFAULT_PATH)
    with path.open("rb") as fh:
        return Catalog.model_validate(tomllib.load(fh))


@cache
def catalog() -> Catalog:
    return load_catalog()
