"""Tests for the benefit catalog in shared.catalog and the shipped shared/data/catalog.toml."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from shared.catalog import DEFAULT_PATH, Catalog, Stage, catalog, load_catalog

EXPECTED_DEPARTMENTS = ["civil", "hrss", "health", "medins", "edu", "housing", "water"]

# A small valid catalog; bad-file tests replace one piece of it.
HEADER = """
version = "test.1"
default_deadline_days = 15

[[departments]]
code = "civil"
name = "民政"
full_name = "民政部门"
"""

REVIEWED_ITEM = """
[[items]]
code = "subsistence_allowance"
department = "civil"
name = "最低生活保障"
stages = ["field_check", "village_review", "township_audit", "county_decision"]
public_notice_days = 5
"""

PLAIN_ITEM = """
[[items]]
code = "temporary_assistance"
department = "civil"
name = "临时救助"
stages = ["field_check", "township_audit"]
deadline_days = 7
"""


@pytest.fixture
def shipped(monkeypatch: pytest.MonkeyPatch) -> Catalog:
    monkeypatch.delenv("RELIEF_CATALOG_PATH", raising=False)
    return load_catalog()


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "catalog.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _item(code: str, department: str, stages: str, extra: str = "") -> str:
    return (
        f'\n[[items]]\ncode = "{code}"\ndepartment = "{department}"\nname = "事项"\n'
        f"stages = {stages}\n{extra}\n"
    )


# --- the shipped catalog -------------------------------------------------------------------


def test_shipped_catalog_has_seven_departments(shipped: Catalog) -> None:
    assert shipped.department_codes() == EXPECTED_DEPARTMENTS
    assert len(shipped.departments) == 7


def test_shipped_catalog_has_fifteen_distinct_items(shipped: Catalog) -> None:
    codes = [i.code for i in shipped.items]
    assert len(codes) == 15
    assert len(set(codes)) == 15


def test_every_shipped_item_belongs_to_a_known_department(shipped: Catalog) -> None:
    for item in shipped.items:
        assert shipped.department(item.department) is not None, item.code
    # and every department offers at least one item
    assert {i.department for i in shipped.items} == set(EXPECTED_DEPARTMENTS)


def test_shipped_items_have_valid_stage_rules(shipped: Catalog) -> None:
    order = list(Stage)
    for item in shipped.items:
        positions = [order.index(s) for s in item.stages]
        assert positions == sorted(set(positions)), item.code
        assert (Stage.VILLAGE_REVIEW in item.stages) == (item.public_notice_days is not None)


def test_deadline_days_falls_back_to_default(shipped: Catalog) -> None:
    assert shipped.default_deadline_days == 15
    for item in shipped.items:
        assert item.deadline_days is None
        assert shipped.deadline_days(item) == 15


def test_lookup_by_code(shipped: Catalog) -> None:
    item = shipped.item("subsistence_allowance")
    assert item is not None
    assert item.department == "civil"
    assert item.name == "最低生活保障（低保）"
    assert item.public_notice_days == 5
    assert item.stages == (
        Stage.FIELD_CHECK,
        Stage.VILLAGE_REVIEW,
        Stage.TOWNSHIP_AUDIT,
        Stage.COUNTY_DECISION,
    )
    drinking = shipped.item("drinking_water")
    assert drinking is not None
    assert drinking.department == "water"
    assert drinking.stages == (Stage.FIELD_CHECK,)

    civil = shipped.department("civil")
    assert civil is not None
    assert civil.name == "民政"
    assert civil.full_name == "民政部门"


def test_unknown_codes_return_none(shipped: Catalog) -> None:
    assert shipped.item("no_such_item") is None
    assert shipped.item("") is None
    assert shipped.department("no_such_department") is None


def test_cached_catalog_is_the_shipped_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RELIEF_CATALOG_PATH", raising=False)
    assert DEFAULT_PATH.is_file()
    assert catalog() is catalog()
    assert len(catalog().items) == 15


# --- loading other files --------------------------------------------------------------------


def test_valid_small_file_loads(tmp_path: Path) -> None:
    loaded = load_catalog(_write(tmp_path, HEADER + REVIEWED_ITEM + PLAIN_ITEM))
    assert loaded.version == "test.1"
    assert [i.code for i in loaded.items] == ["subsistence_allowance", "temporary_assistance"]
    plain = loaded.item("temporary_assistance")
    reviewed = loaded.item("subsistence_allowance")
    assert plain is not None
    assert reviewed is not None
    # an item's own deadline wins over the default
    assert loaded.deadline_days(plain) == 7
    assert loaded.deadline_days(reviewed) == 15


def test_catalog_path_env_var_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELIEF_CATALOG_PATH", str(_write(tmp_path, HEADER + PLAIN_ITEM)))
    assert [i.code for i in load_catalog().items] == ["temporary_assistance"]


def test_duplicate_item_code_is_rejected(tmp_path: Path) -> None:
    path = _write(tmp_path, HEADER + PLAIN_ITEM + PLAIN_ITEM)
    with pytest.raises(ValidationError, match="duplicate item codes"):
        load_catalog(path)


def test_duplicate_department_code_is_rejected(tmp_path: Path) -> None:
    dept = '\n[[departments]]\ncode = "civil"\nname = "民政"\nfull_name = "民政部门"\n'
    path = _write(tmp_path, HEADER + dept + PLAIN_ITEM)
    with pytest.raises(ValidationError, match="duplicate department codes"):
        load_catalog(path)


def test_unknown_department_is_rejected(tmp_path: Path) -> None:
    bad = _item("orphan_item", "nowhere", '["field_check"]')
    path = _write(tmp_path, HEADER + PLAIN_ITEM + bad)
    with pytest.raises(ValidationError, match="unknown department nowhere"):
        load_catalog(path)


@pytest.mark.parametrize(
    "stages",
    [
        '["township_audit", "field_check"]',
        '["county_decision", "township_audit"]',
        '["field_check", "county_decision", "township_audit"]',
        '["field_check", "field_check"]',
    ],
)
def test_stages_out_of_order_or_repeated_are_rejected(tmp_path: Path, stages: str) -> None:
    path = _write(tmp_path, HEADER + _item("bad_order", "civil", stages))
    with pytest.raises(ValidationError, match="procedural order"):
        load_catalog(path)


def test_unknown_stage_is_rejected(tmp_path: Path) -> None:
    path = _write(tmp_path, HEADER + _item("bad_stage", "civil", '["field_check", "lottery"]'))
    with pytest.raises(ValidationError):
        load_catalog(path)


def test_village_review_without_notice_days_is_rejected(tmp_path: Path) -> None:
    bad = _item("no_notice", "civil", '["field_check", "village_review", "township_audit"]')
    with pytest.raises(ValidationError, match="public_notice_days"):
        load_catalog(_write(tmp_path, HEADER + bad))


def test_notice_days_without_village_review_is_rejected(tmp_path: Path) -> None:
    bad = _item(
        "stray_notice", "civil", '["field_check", "township_audit"]', "public_notice_days = 5"
    )
    with pytest.raises(ValidationError, match="public_notice_days"):
        load_catalog(_write(tmp_path, HEADER + bad))
