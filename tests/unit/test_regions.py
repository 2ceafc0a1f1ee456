"""Tests for the Yunnan administrative division table in shared.regions."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from shared.regions import Region, RegionTable, load_regions, regions

HEADER = "code,name,level,parent_code\n"

# A small valid file; bad-file tests append one offending row to it.
VALID_ROWS = (
    "530000,云南省,province,\n"
    "530100,昆明市,prefecture,530000\n"
    "532900,大理白族自治州,prefecture,530000\n"
    "530102,五华区,county,530100\n"
    "532901,大理市,county,532900\n"
)

EXPECTED_COUNTIES_PER_PREFECTURE = {
    "530100": 14,  # 昆明市
    "530300": 9,  # 曲靖市
    "530400": 9,  # 玉溪市
    "530500": 5,  # 保山市
    "530600": 11,  # 昭通市
    "530700": 5,  # 丽江市
    "530800": 10,  # 普洱市
    "530900": 8,  # 临沧市
    "532300": 10,  # 楚雄彝族自治州
    "532500": 13,  # 红河哈尼族彝族自治州
    "532600": 8,  # 文山壮族苗族自治州
    "532800": 3,  # 西双版纳傣族自治州
    "532900": 12,  # 大理白族自治州
    "533100": 5,  # 德宏傣族景颇族自治州
    "533300": 4,  # 怒江傈僳族自治州
    "533400": 3,  # 迪庆藏族自治州
}


def _write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "regions.csv"
    path.write_text(HEADER + body, encoding="utf-8")
    return path


def test_counts() -> None:
    table = regions()
    assert table.province == Region("530000", "云南省", "province", None)
    assert len(table.prefectures) == 16
    assert len(table.counties) == 129


def test_counties_per_prefecture() -> None:
    counts = Counter(c.parent_code for c in regions().counties.values())
    assert dict(counts) == EXPECTED_COUNTIES_PER_PREFECTURE


def test_county_codes_share_parent_prefix() -> None:
    table = regions()
    for county in table.counties.values():
        assert county.level == "county"
        assert county.parent_code is not None
        assert county.code[:4] == county.parent_code[:4], county
    for prefecture in table.prefectures.values():
        assert prefecture.level == "prefecture"
        assert prefecture.parent_code == "530000"
        assert prefecture.code.endswith("00")


def test_no_placeholder_codes() -> None:
    # "市辖区" placeholders such as 530101 are not real divisions.
    table = regions()
    assert "530101" not in table.counties
    assert all(c.name != "市辖区" for c in table.counties.values())


@pytest.mark.parametrize(
    ("code", "name"),
    [
        ("530102", "五华区"),
        ("530129", "寻甸回族彝族自治县"),
        ("530402", "红塔区"),
        ("530403", "江川区"),
        ("530481", "澄江市"),
        ("530524", "昌宁县"),
        ("530681", "水富市"),
        ("530829", "西盟佤族自治县"),
        ("530902", "临翔区"),
        ("532301", "楚雄市"),
        ("532302", "禄丰市"),
        ("532503", "蒙自市"),
        ("532504", "弥勒市"),
        ("532601", "文山市"),
        ("532901", "大理市"),
        ("533102", "瑞丽市"),
        ("533103", "芒市"),
        ("533301", "泸水市"),
        ("533401", "香格里拉市"),
    ],
)
def test_county_names(code: str, name: str) -> None:
    assert regions().counties[code].name == name


def test_prefecture_names() -> None:
    prefectures = regions().prefectures
    assert prefectures["530100"].name == "昆明市"
    assert prefectures["530800"].name == "普洱市"
    assert prefectures["532900"].name == "大理白族自治州"
    assert prefectures["533400"].name == "迪庆藏族自治州"


def test_is_county_and_is_prefecture() -> None:
    table = regions()
    assert table.is_county("532901")
    assert not table.is_county("532900")
    assert not table.is_county("530000")
    assert table.is_prefecture("532900")
    assert not table.is_prefecture("532901")
    assert not table.is_prefecture("110100")


def test_prefecture_of() -> None:
    table = regions()
    assert table.prefecture_of("532901").code == "532900"
    assert table.prefecture_of("530681").name == "昭通市"
    assert table.prefecture_of("533401").name == "迪庆藏族自治州"
    with pytest.raises(KeyError):
        table.prefecture_of("530101")
    with pytest.raises(KeyError):
        table.prefecture_of("532900")  # a prefecture, not a county


def test_full_name() -> None:
    table = regions()
    assert table.full_name("532901") == "云南省大理白族自治州大理市"
    assert table.full_name("530102") == "云南省昆明市五华区"
    assert table.full_name("532900") == "云南省大理白族自治州"
    assert table.full_name("530000") == "云南省"
    with pytest.raises(KeyError):
        table.full_name("999999")


def test_county_in_scope() -> None:
    table = regions()
    # Province scope covers every county.
    assert all(table.county_in_scope(code, "530000") for code in table.counties)
    # Prefecture scope.
    assert table.county_in_scope("532901", "532900")
    assert table.county_in_scope("532932", "532900")
    assert not table.county_in_scope("530102", "532900")  # 五华区 is in 昆明市
    # County scope.
    assert table.county_in_scope("532901", "532901")
    assert not table.county_in_scope("532922", "532901")
    # Unknown codes.
    assert not table.county_in_scope("999999", "530000")
    assert not table.county_in_scope("532901", "999900")
    assert not table.county_in_scope("532900", "532900")  # not a county


def test_regions_is_cached() -> None:
    assert regions() is regions()


def test_load_valid_file(tmp_path: Path) -> None:
    table = load_regions(_write(tmp_path, VALID_ROWS))
    assert isinstance(table, RegionTable)
    assert set(table.prefectures) == {"530100", "532900"}
    assert set(table.counties) == {"530102", "532901"}


def test_rejects_duplicate_code(tmp_path: Path) -> None:
    path = _write(tmp_path, VALID_ROWS + "532901,大理市,county,532900\n")
    with pytest.raises(ValueError, match="duplicate code 532901"):
        load_regions(path)


def test_rejects_unknown_parent(tmp_path: Path) -> None:
    path = _write(tmp_path, VALID_ROWS + "530681,水富市,county,530600\n")
    with pytest.raises(ValueError, match="not a prefecture in the file"):
        load_regions(path)


def test_rejects_county_parented_by_county(tmp_path: Path) -> None:
    path = _write(tmp_path, VALID_ROWS + "530103,盘龙区,county,530102\n")
    with pytest.raises(ValueError, match="not a prefecture in the file"):
        load_regions(path)


def test_rejects_code_outside_yunnan(tmp_path: Path) -> None:
    path = _write(tmp_path, VALID_ROWS + "520102,南明区,county,530100\n")
    with pytest.raises(ValueError, match="does not start with 53"):
        load_regions(path)


@pytest.mark.parametrize("code", ["53010", "5301021", "53010x"])
def test_rejects_malformed_code(tmp_path: Path, code: str) -> None:
    path = _write(tmp_path, VALID_ROWS + f"{code},某区,county,530100\n")
    with pytest.raises(ValueError, match="is not 6 digits"):
        load_regions(path)


def test_rejects_invalid_level(tmp_path: Path) -> None:
    path = _write(tmp_path, VALID_ROWS + "530103,盘龙区,district,530100\n")
    with pytest.raises(ValueError, match="invalid level"):
        load_regions(path)


def test_rejects_bad_header(tmp_path: Path) -> None:
    path = tmp_path / "regions.csv"
    path.write_text("code,name,level\n530000,云南省,province\n", encoding="utf-8")
    with pytest.raises(ValueError, match="header"):
        load_regions(path)
