"""Tests for application forms: the spec in shared.catalog, the checks in shared.forms, and the
forms of the shipped catalog."""

from __future__ import annotations

import json
import re
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from shared.catalog import Catalog, FieldType, FormField, Item, load_catalog
from shared.errors import InvalidInput
from shared.forms import CHINA_TZ, FORM_INVALID_MESSAGE, form_schema, validate_form

TODAY = date(2025, 6, 15)
_CJK = re.compile(r"[\u4e00-\u9fff]")


@pytest.fixture(scope="module")
def shipped() -> Catalog:
    return load_catalog(Path(__file__).parents[2] / "shared" / "data" / "catalog.toml")


def _shipped_item(catalog: Catalog, code: str) -> Item:
    item = catalog.item(code)
    assert item is not None
    return item


# An item whose form has one field of each kind, for the focused tests.
SAMPLE = Item.model_validate(
    {
        "code": "sample_item",
        "department": "civil",
        "name": "测试事项",
        "stages": ["field_check"],
        "fields": [
            {"name": "person_name", "label": "姓名", "type": "string", "required": True,
             "min_length": 2, "max_length": 10},
            {"name": "story", "label": "情况说明", "type": "text", "max_length": 20},
            {"name": "members", "label": "家庭人数", "type": "integer", "required": True,
             "min": 1, "max": 30, "unit": "人"},
            {"name": "count", "label": "次数", "type": "integer"},
            {"name": "cost", "label": "费用", "type": "decimal", "min": 0, "max": "10000.5",
             "unit": "元"},
            {"name": "whole_yuan", "label": "整元金额", "type": "decimal", "max_decimal_places": 0},
            {"name": "happened_on", "label": "发生日期", "type": "date", "min_date": "2020-01-01",
             "max_date": "today"},
            {"name": "deadline_on", "label": "截止日期", "type": "date", "max_date": "2030-12-31"},
            {"name": "insured", "label": "是否参保", "type": "boolean"},
            {"name": "kind", "label": "困难类型", "type": "choice", "choices": [
                {"value": "illness", "label": "疾病"},
                {"value": "disaster", "label": "灾害"},
            ]},
        ],
    }
)  # fmt: skip

VALID = {"person_name": "张三", "members": 3}


def _errors(data: Any, item: Item = SAMPLE) -> list[dict[str, Any]]:
    with pytest.raises(InvalidInput) as info:
        validate_form(item, data, today=TODAY)
    exc = info.value
    assert exc.code == "form_invalid"
    assert exc.status_code == 422
    assert exc.message == FORM_INVALID_MESSAGE
    assert isinstance(exc.details, list)
    return exc.details


def _only_error(field: str, value: Any) -> dict[str, Any]:
    details = _errors({**VALID, field: value})
    assert len(details) == 1, details
    assert details[0]["field"] == f"form.{field}"
    return details[0]


def _assert_error(field: str, value: Any, code: str, *words: str) -> None:
    detail = _only_error(field, value)
    assert detail["code"] == code, (value, detail)
    spec = SAMPLE.field(field)
    assert spec is not None
    assert f"「{spec.label}」" in detail["message"]
    for word in words:
        assert word in detail["message"]


# --- the shipped catalog --------------------------------------------------------------------


def test_every_shipped_item_has_a_form(shipped: Catalog) -> None:
    assert len(shipped.items) == 15
    for item in shipped.items:
        assert 2 <= len(item.fields) <= 6, item.code
        assert any(f.required for f in item.fields), item.code
        names = [f.name for f in item.fields]
        assert len(names) == len(set(names)), item.code


def test_shipped_forms_speak_chinese_to_citizens(shipped: Catalog) -> None:
    for item in shipped.items:
        for spec in item.fields:
            assert _CJK.search(spec.label), (item.code, spec.name)
            assert spec.help is None or _CJK.search(spec.help), (item.code, spec.name)
            assert re.fullmatch(r"[a-z][a-z0-9_]+", spec.name)
            for choice in spec.choices or ():
                assert _CJK.search(choice.label), (item.code, spec.name, choice.value)
                assert re.fullmatch(r"[a-z][a-z0-9_]+", choice.value)


def test_form_schema_of_every_shipped_item_is_json(shipped: Catalog) -> None:
    for item in shipped.items:
        schema = form_schema(item)
        assert json.loads(json.dumps(schema, ensure_ascii=False)) == schema
        assert [entry["name"] for entry in schema] == [f.name for f in item.fields]
        for entry in schema:
            assert {"name", "label", "type", "required", "help"} <= entry.keys()
            assert entry["type"] in {t.value for t in FieldType}


def test_form_schema_carries_the_bounds(shipped: Catalog) -> None:
    medical = {e["name"]: e for e in form_schema(_shipped_item(shipped, "medical_assistance"))}
    assert medical["hospital_name"] == {
        "name": "hospital_name",
        "label": "住院的医院",
        "type": "string",
        "required": True,
        "help": None,
        "min_length": None,
        "max_length": 100,
    }
    cost = medical["total_medical_cost"]
    assert cost["type"] == "decimal"
    assert (cost["min"], cost["max"], cost["max_decimal_places"]) == ("0", "10000000", 2)
    assert cost["unit"] == "元"
    assert medical["hospitalized_from"]["max_date"] == "today"
    assert medical["hospitalized_from"]["min_date"] is None
    assert medical["insurance_reimbursed"]["required"] is False

    housing = {e["name"]: e for e in form_schema(_shipped_item(shipped, "housing_safety"))}
    assert (housing["built_year"]["min"], housing["built_year"]["max"]) == (1900, 2100)
    assert (housing["occupants"]["min"], housing["occupants"]["max"]) == (1, 30)
    assert [c["value"] for c in housing["house_condition"]["choices"]] == [
        "partly_unsafe",
        "wholly_unsafe",
        "collapsed",
    ]

    dropout = {e["name"]: e for e in form_schema(_shipped_item(shipped, "dropout_prevention"))}
    grades = dropout["grade"]["choices"]
    assert len(grades) == 10
    assert grades[0] == {"value": "primary_1", "label": "小学一年级"}
    assert grades[-1]["value"] == "senior_or_vocational"


def test_sample_schema_of_each_type() -> None:
    schema = {e["name"]: e for e in form_schema(SAMPLE)}
    assert schema["story"]["max_length"] == 20
    assert schema["members"]["min"] == 1
    assert schema["count"]["min"] is None
    assert schema["cost"]["max"] == "10000.5"
    assert schema["whole_yuan"]["max_decimal_places"] == 0
    assert schema["happened_on"]["min_date"] == "2020-01-01"
    assert schema["deadline_on"]["max_date"] == "2030-12-31"
    assert schema["insured"] == {
        "name": "insured",
        "label": "是否参保",
        "type": "boolean",
        "required": False,
        "help": None,
    }
    assert schema["kind"]["choices"] == [
        {"value": "illness", "label": "疾病"},
        {"value": "disaster", "label": "灾害"},
    ]


# --- valid answers --------------------------------------------------------------------------


def test_medical_assistance_answers_are_normalised(shipped: Catalog) -> None:
    item = _shipped_item(shipped, "medical_assistance")
    answers = {
        "hospital_name": "  昆明医科大学第一附属医院 ",
        "hospitalized_from": "2025-03-01",
        "discharged_on": "2025-03-20",
        "total_medical_cost": "１２３４５.5",  # full-width digits from a Chinese input method
        "out_of_pocket_cost": 3000,
        "insurance_reimbursed": 9345.5,
    }
    assert validate_form(item, answers, today=TODAY) == {
        "hospital_name": "昆明医科大学第一附属医院",
        "hospitalized_from": "2025-03-01",
        "discharged_on": "2025-03-20",
        "total_medical_cost": "12345.50",
        "out_of_pocket_cost": "3000.00",
        "insurance_reimbursed": "9345.50",
    }


def test_optional_fields_left_empty_are_left_out(shipped: Catalog) -> None:
    item = _shipped_item(shipped, "medical_assistance")
    answers = {
        "hospital_name": "寻甸县人民医院",
        "hospitalized_from": "2025-06-15",  # today is allowed
        "discharged_on": "",
        "total_medical_cost": "8000",
        "out_of_pocket_cost": "2400.00",
        "insurance_reimbursed": None,
    }
    assert validate_form(item, answers, today=TODAY) == {
        "hospital_name": "寻甸县人民医院",
        "hospitalized_from": "2025-06-15",
        "total_medical_cost": "8000.00",
        "out_of_pocket_cost": "2400.00",
    }


def test_dropout_prevention_answers(shipped: Catalog) -> None:
    item = _shipped_item(shipped, "dropout_prevention")
    answers = {
        "student_name": "李小明",
        "school_name": "会泽县娜姑镇中学",
        "grade": "junior_2",
        "dropout_reason": " migrant_work ",
    }
    assert validate_form(item, answers, today=TODAY) == {
        "student_name": "李小明",
        "school_name": "会泽县娜姑镇中学",
        "grade": "junior_2",
        "dropout_reason": "migrant_work",
    }


def test_housing_safety_answers(shipped: Catalog) -> None:
    item = _shipped_item(shipped, "housing_safety")
    answers = {
        "house_structure": "earth_wood",
        "house_condition": "wholly_unsafe",
        "built_year": "1987",
        "occupants": 4.0,  # a JavaScript number that happens to be whole
        "only_house": False,
    }
    out = validate_form(item, answers, today=TODAY)
    assert out == {
        "house_structure": "earth_wood",
        "house_condition": "wholly_unsafe",
        "built_year": 1987,
        "occupants": 4,
        "only_house": False,
    }
    assert type(out["built_year"]) is int
    assert type(out["occupants"]) is int


def test_drinking_water_answers(shipped: Catalog) -> None:
    item = _shipped_item(shipped, "drinking_water")
    answers = {"problem": "seasonal_shortage", "households_affected": "12", "since": "2025-03-01"}
    assert validate_form(item, answers, today=TODAY) == {
        "problem": "seasonal_shortage",
        "households_affected": 12,
        "since": "2025-03-01",
    }


def test_sample_values_of_each_type() -> None:
    answers = {
        "person_name": " 王 芳 ",
        "story": "第一行\r\n第二行\r",
        "members": "+3",
        "count": -2,
        "cost": ".5",
        "whole_yuan": "120.00",
        "happened_on": date(2024, 5, 1),
        "deadline_on": "2030-12-31",
        "insured": "TRUE",
        "kind": "disaster",
    }
    assert validate_form(SAMPLE, answers, today=TODAY) == {
        "person_name": "王 芳",
        "story": "第一行\n第二行",
        "members": 3,
        "count": -2,
        "cost": "0.50",
        "whole_yuan": "120",
        "happened_on": "2024-05-01",
        "deadline_on": "2030-12-31",
        "insured": True,
        "kind": "disaster",
    }


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("0", "0.00"),
        ("-0", "0.00"),
        ("10000.5", "10000.50"),
        ("7.", "7.00"),
        ("1.500", "1.50"),  # trailing zeros are not extra places
        (Decimal("2.1"), "2.10"),
        (0.1, "0.10"),
        (12, "12.00"),
    ],
)
def test_decimal_normalisation(raw: Any, expected: str) -> None:
    assert validate_form(SAMPLE, {**VALID, "cost": raw}, today=TODAY)["cost"] == expected


def test_boolean_false_answers_a_required_question(shipped: Catalog) -> None:
    item = _shipped_item(shipped, "insurance_subsidy")
    out = validate_form(
        item, {"insurance_year": 2025, "members_to_insure": 2, "already_paid": False}, today=TODAY
    )
    assert out == {"insurance_year": 2025, "members_to_insure": 2, "already_paid": False}


def test_today_defaults_to_the_date_in_china() -> None:
    assert CHINA_TZ.utcoffset(None) == timedelta(hours=8)
    tomorrow = date.today() + timedelta(days=2)
    details = _errors({**VALID, "happened_on": tomorrow.isoformat()})
    assert details[0]["code"] == "form_field_date_range"
    with pytest.raises(InvalidInput):
        validate_form(SAMPLE, {**VALID, "happened_on": tomorrow.isoformat()})


# --- one test per error code ----------------------------------------------------------------


@pytest.mark.parametrize("value", [None, "", "   ", "\n"])
def test_required(value: Any) -> None:
    _assert_error("person_name", value, "form_field_required", "请填写")


def test_required_when_absent_and_when_no_form_at_all() -> None:
    details = _errors({"person_name": "张三"})
    assert details == [
        {"field": "form.members", "code": "form_field_required", "message": "请填写「家庭人数」"}
    ]
    details = _errors(None)
    assert [d["field"] for d in details] == ["form.person_name", "form.members"]
    assert {d["code"] for d in details} == {"form_field_required"}


def test_required_choice_asks_to_choose(shipped: Catalog) -> None:
    details = _errors({}, _shipped_item(shipped, "drinking_water"))
    assert details[0] == {
        "field": "form.problem",
        "code": "form_field_required",
        "message": "请选择「吃水遇到的问题」",
    }


def test_unknown() -> None:
    details = _errors({**VALID, "photo": "x.jpg"})
    assert details == [
        {
            "field": "form.photo",
            "code": "form_field_unknown",
            "message": "申请表中没有这一项，请刷新后重新填写",
        }
    ]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("person_name", 12),
        ("person_name", ["张三"]),
        ("story", {"text": "x"}),
        ("members", True),
        ("members", 2.5),
        ("members", "2.5"),
        ("members", "三"),
        ("members", "1e2"),
        ("members", "0x10"),
        ("members", "1,000"),
        ("members", float("nan")),
        ("members", "9" * 41),
        ("cost", "NaN"),
        ("cost", "nan"),
        ("cost", "Infinity"),
        ("cost", "-inf"),
        ("cost", float("nan")),
        ("cost", float("inf")),
        ("cost", Decimal("NaN")),
        ("cost", "1e3"),
        ("cost", "十元"),
        ("cost", False),
        ("cost", [1]),
        ("insured", "yes"),
        ("insured", 1),
        ("insured", "是"),
    ],
)
def test_type(field: str, value: Any) -> None:
    _assert_error(field, value, "form_field_type")


def test_type_messages_say_what_is_expected() -> None:
    assert _only_error("members", 2.5)["message"] == "「家庭人数」应填写整数"
    assert _only_error("cost", "NaN")["message"] == "「费用」应填写数字"
    assert _only_error("person_name", 12)["message"] == "「姓名」应填写文字"
    assert _only_error("insured", "yes")["message"] == "「是否参保」请选择“是”或“否”"


def test_too_long() -> None:
    _assert_error("person_name", "张" * 11, "form_field_too_long", "10")
    _assert_error("story", "字" * 21, "form_field_too_long", "20")
    # length is counted after stripping
    assert validate_form(SAMPLE, {**VALID, "story": " " + "字" * 20 + " "}, today=TODAY)


def test_too_short() -> None:
    _assert_error("person_name", " 张 ", "form_field_too_short", "2")


@pytest.mark.parametrize("value", ["a\x00b", "\ud800", "a\x07"])
def test_unreadable_characters(value: str) -> None:
    _assert_error("story", value, "form_field_characters")


def test_single_line_text_may_not_break() -> None:
    _assert_error("person_name", "张\n三", "form_field_characters", "不能换行")


@pytest.mark.parametrize(
    ("field", "value", "bound"),
    [("members", 0, "1人"), ("members", "-5", "1人"), ("cost", "-0.01", "0元")],
)
def test_too_small(field: str, value: Any, bound: str) -> None:
    _assert_error(field, value, "form_field_too_small", f"不能小于{bound}")


@pytest.mark.parametrize(
    ("field", "value", "bound"),
    [("members", 31, "30人"), ("cost", "10000.51", "10000.5元"), ("cost", 1e300, "10000.5元")],
)
def test_too_large(field: str, value: Any, bound: str) -> None:
    _assert_error(field, value, "form_field_too_large", f"不能大于{bound}")


def test_unbounded_integers_stay_exact_in_javascript() -> None:
    assert validate_form(SAMPLE, {**VALID, "count": 2**53 - 1}, today=TODAY)["count"] == 2**53 - 1
    _assert_error("count", 2**53, "form_field_too_large")
    _assert_error("count", -(2**53), "form_field_too_small")
    _assert_error("whole_yuan", "1" + "0" * 16, "form_field_too_large")


def test_decimal_places() -> None:
    _assert_error("cost", "1.234", "form_field_decimal_places", "2位小数")
    _assert_error("cost", 0.1 + 0.2, "form_field_decimal_places")
    _assert_error("whole_yuan", "12.5", "form_field_decimal_places", "整数")


@pytest.mark.parametrize("value", ["illness ", "Illness", "疾病", "other", 1, True, ["illness"]])
def test_choice(value: Any) -> None:
    if value == "illness ":
        assert validate_form(SAMPLE, {**VALID, "kind": value}, today=TODAY)["kind"] == "illness"
        return
    _assert_error("kind", value, "form_field_choice", "请从给出的选项中选择")


@pytest.mark.parametrize(
    "value",
    ["2023-02-29", "2024-13-01", "20240101", "2024-W01-1", "2024/05/01", "5月1日", 20240501, True],
)
def test_date(value: Any) -> None:
    _assert_error("happened_on", value, "form_field_date", "年-月-日")


def test_date_range() -> None:
    _assert_error("happened_on", "2019-12-31", "form_field_date_range", "不能早于2020年1月1日")
    _assert_error("happened_on", "2025-06-16", "form_field_date_range", "不能晚于今天")
    _assert_error("deadline_on", "2031-01-01", "form_field_date_range", "不能晚于2030年12月31日")
    out = validate_form(
        SAMPLE, {**VALID, "happened_on": "2020-01-01", "deadline_on": "2030-12-31"}, today=TODAY
    )
    assert (out["happened_on"], out["deadline_on"]) == ("2020-01-01", "2030-12-31")


@pytest.mark.parametrize("data", [["person_name"], "person_name=张三", 42])
def test_a_form_that_is_not_an_object(data: Any) -> None:
    details = _errors(data)
    message = "申请表格式有误，请重新填写"
    assert details == [{"field": "form", "code": "form_type", "message": message}]


def test_all_problems_are_reported_at_once() -> None:
    details = _errors(
        {
            "person_name": "张" * 11,
            "story": 5,
            "count": "2.5",
            "cost": "-1",
            "whole_yuan": "1.5",
            "happened_on": "2025-02-30",
            "deadline_on": "2040-01-01",
            "insured": "maybe",
            "kind": "flood",
            "zz_unknown": 1,
            "another_unknown": None,
        }
    )
    assert [(d["field"], d["code"]) for d in details] == [
        ("form.person_name", "form_field_too_long"),
        ("form.story", "form_field_type"),
        ("form.members", "form_field_required"),
        ("form.count", "form_field_type"),
        ("form.cost", "form_field_too_small"),
        ("form.whole_yuan", "form_field_decimal_places"),
        ("form.happened_on", "form_field_date"),
        ("form.deadline_on", "form_field_date_range"),
        ("form.insured", "form_field_type"),
        ("form.kind", "form_field_choice"),
        ("form.zz_unknown", "form_field_unknown"),
        ("form.another_unknown", "form_field_unknown"),
    ]
    for detail in details:
        assert _CJK.search(detail["message"]), detail


def test_shipped_form_errors_name_the_question(shipped: Catalog) -> None:
    item = _shipped_item(shipped, "medical_assistance")
    details = _errors(
        {
            "hospital_name": "县医院",
            "hospitalized_from": "2025-07-01",
            "total_medical_cost": "10000000.01",
            "out_of_pocket_cost": "abc",
        },
        item,
    )
    assert details == [
        {
            "field": "form.hospitalized_from",
            "code": "form_field_date_range",
            "message": "「住院日期」不能晚于今天",
        },
        {
            "field": "form.total_medical_cost",
            "code": "form_field_too_large",
            "message": "「医疗费用总共多少」不能大于10000000元",
        },
        {
            "field": "form.out_of_pocket_cost",
            "code": "form_field_type",
            "message": "「自己掏了多少钱」应填写数字",
        },
    ]


# --- the form spec: bad specs stop the catalog from loading ---------------------------------

HEADER = """
version = "test.1"
default_deadline_days = 15

[[departments]]
code = "civil"
name = "民政"
full_name = "民政部门"

[[items]]
code = "temporary_assistance"
department = "civil"
name = "临时救助"
stages = ["field_check"]
"""


def _field(**spec: Any) -> str:
    lines = ["", "[[items.fields]]"]
    for key, value in spec.items():
        lines.append(f"{key} = {value}")
    return "\n".join(lines) + "\n"


def _load(tmp_path: Path, *fields: str) -> Catalog:
    path = tmp_path / "catalog.toml"
    path.write_text(HEADER + "".join(fields), encoding="utf-8")
    return load_catalog(path)


def _spec(name: str = '"amount"', label: str = '"金额"', **rest: Any) -> str:
    return _field(name=name, label=label, **rest)


def test_small_catalog_with_a_form_loads_with_defaults(tmp_path: Path) -> None:
    loaded = _load(
        tmp_path,
        _spec(name='"who"', label='"姓名"', type='"string"', required="true"),
        _spec(name='"story"', label='"说明"', type='"text"'),
        _spec(type='"decimal"', min="0", max="99.5"),
        _spec(name='"count"', label='"人数"', type='"integer"', min='"1"', max="30.0"),
        _spec(name='"since"', label='"日期"', type='"date"', min_date="2020-01-01"),
        _spec(
            name='"kind"',
            label='"类型"',
            type='"choice"',
            choices='[{ value = "aa", label = "甲" }, { value = "bb", label = "乙" }]',
        ),
    )
    item = loaded.item("temporary_assistance")
    assert item is not None
    who, story, amount, count, since, kind = item.fields
    assert (who.max_length, story.max_length) == (100, 2000)
    assert who.required and not story.required
    assert amount.max_decimal_places == 2
    assert (amount.min, amount.max) == (Decimal(0), Decimal("99.5"))
    assert isinstance(amount.min, Decimal)
    assert (count.min, count.max) == (1, 30)
    assert isinstance(count.min, int)
    assert isinstance(count.max, int)
    assert since.min_date == date(2020, 1, 1)
    assert kind.choice_values() == ("aa", "bb")


def test_items_without_a_form_still_load(tmp_path: Path) -> None:
    item = _load(tmp_path).item("temporary_assistance")
    assert item is not None
    assert item.fields == ()
    assert form_schema(item) == []
    assert validate_form(item, None) == {}


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        (
            [_spec(type='"string"'), _spec(type='"integer"')],
            r"item temporary_assistance: duplicate form field names: \['amount'\]",
        ),
        ([_spec(type='"choice"')], "field amount: a choice field needs at least two choices"),
        (
            [_spec(type='"choice"', choices='[{ value = "aa", label = "甲" }]')],
            "field amount: a choice field needs at least two choices",
        ),
        (
            [
                _spec(
                    type='"choice"',
                    choices='[{ value = "aa", label = "甲" }, { value = "aa", label = "乙" }]',
                )
            ],
            r"field amount: duplicate choice values: \['aa'\]",
        ),
        (
            [
                _spec(
                    type='"choice"',
                    choices='[{ value = "aa", label = "甲" }, { value = "bb", label = "甲" }]',
                )
            ],
            "field amount: duplicate choice labels",
        ),
        (
            [_spec(type='"choice"', choices='[{ value = "A", label = "甲" }, { value = "b" }]')],
            r"field amount \(choices\.0\.value\)",
        ),
        (
            [_spec(type='"string"', choices='[{ value = "aa", label = "甲" }]')],
            "field amount: choices applies only to choice fields, not string",
        ),
        ([_spec(type='"integer"', min="5", max="1")], "field amount: min 5 exceeds max 1"),
        ([_spec(type='"decimal"', min='"9.5"', max="1")], "field amount: min 9.5 exceeds max 1"),
        (
            [_spec(type='"integer"', min="0.5")],
            "field amount \\(min\\): min of an integer field must be a whole number",
        ),
        ([_spec(type='"integer"', max="true")], "a bound must be a number, not a boolean"),
        ([_spec(type='"decimal"', max="nan")], "finite number"),
        ([_spec(type='"integer"', max=str(2**53))], "beyond the limit"),
        (
            [_spec(type='"decimal"', max='"0.005"')],
            "field amount: max 0.005 has more than 2 decimal places",
        ),
        (
            [_spec(type='"decimal"', max_decimal_places="7")],
            r"field amount \(max_decimal_places\)",
        ),
        (
            [_spec(type='"string"', min="1")],
            "field amount: min applies only to decimal and integer fields, not string",
        ),
        ([_spec(type='"date"', unit='"元"')], "unit applies only to decimal and integer fields"),
        (
            [_spec(type='"integer"', max_length="5")],
            "max_length applies only to string and text fields, not integer",
        ),
        ([_spec(type='"string"', min_length="5", max_length="3")], "min_length 5 exceeds"),
        ([_spec(type='"string"', max_length="501")], "max_length of a string field is at most"),
        ([_spec(type='"text"', max_length="5001")], "max_length of a text field is at most"),
        (
            [_spec(type='"integer"', max_decimal_places="1")],
            "max_decimal_places applies only to decimal fields",
        ),
        (
            [_spec(type='"date"', min_date="2024-01-02", max_date='"2024-01-01"')],
            "field amount: min_date 2024-01-02 is after max_date 2024-01-01",
        ),
        ([_spec(type='"date"', min_date='"today"')], r"field amount \(min_date\)"),
        ([_spec(type='"date"', max_date='"tomorrow"')], r"field amount \(max_date"),
        (
            [_spec(type='"string"', max_date='"today"')],
            "max_date applies only to date fields, not string",
        ),
        ([_spec(type='"photo"')], r"field amount \(type\)"),
        ([_spec(name='"Amount-1"', type='"string"')], r"field Amount-1 \(name\)"),
        ([_spec(label='""', type='"string"')], r"field amount \(label\)"),
        ([_field(name='"amount"', type='"string"')], r"field amount \(label\)"),
        ([_spec(type='"string"', max_lenght="5")], r"field amount \(max_lenght\): Extra inputs"),
    ],
)
def test_bad_specs_are_rejected(tmp_path: Path, fields: list[str], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem) as info:
        _load(tmp_path, *fields)
    assert "item temporary_assistance" in str(info.value)


def test_misspelt_fields_table_is_rejected(tmp_path: Path) -> None:
    misspelt = '\n[[items.field]]\nname = "amount"\nlabel = "金额"\ntype = "string"\n'
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        _load(tmp_path, misspelt)


def test_form_field_models_are_frozen() -> None:
    spec = SAMPLE.fields[0]
    with pytest.raises(ValidationError):
        spec.required = False  # type: ignore[misc]
    assert FormField.model_validate(spec.model_dump()) == spec
