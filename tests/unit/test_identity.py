"""Tests for the resident ID and mobile number checks in shared.identity."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

import pytest
from pydantic_core import PydanticCustomError
from stdnum.cn import ric

from shared.identity import normalize_mobile, normalize_resident_id


def _with_check_char(body17: str) -> str:
    """A number with a correct check character (calc_check_digit ignores the last char)."""
    assert len(body17) == 17
    return body17 + ric.calc_check_digit(body17 + "0")


def _has_cjk(text: str) -> bool:
    return any("\u4e00" <= ch <= "\u9fff" for ch in text)


def _rejection(
    value: str, normalize: Callable[[str], str] = normalize_resident_id
) -> PydanticCustomError:
    with pytest.raises(PydanticCustomError) as info:
        normalize(value)
    assert _has_cjk(info.value.message())
    return info.value


# --- resident ID -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("530129197503121239", "530129197503121239"),
        ("11010519491231002X", "11010519491231002X"),
        ("11010519491231002x", "11010519491231002X"),
        ("  530129197503121239  ", "530129197503121239"),
        ("\t11010519491231002x\n", "11010519491231002X"),
    ],
)
def test_valid_ids_are_accepted_and_normalised(value: str, expected: str) -> None:
    assert normalize_resident_id(value) == expected


def test_full_width_digits_are_normalised_to_ascii() -> None:
    full_width = "530129197503121239".translate(str.maketrans("0123456789", "０１２３４５６７８９"))
    assert normalize_resident_id(full_width) == "530129197503121239"


def test_address_code_created_after_birth_is_accepted() -> None:
    # 530129 (寻甸) was created in 1998; this holder was born in 1975 and registered later.
    # python-stdnum's own validate() refuses such numbers; our rule deliberately does not.
    number = "530129197503121239"
    assert normalize_resident_id(number) == number
    assert _with_check_char(number[:17]) == number


@pytest.mark.parametrize(
    "value", ["", "53012919750312123", "5301291975031212390", "530129750312123", "1" * 30]
)
def test_wrong_length_is_rejected(value: str) -> None:
    assert _rejection(value).type == "id_number_length"


@pytest.mark.parametrize(
    "value",
    [
        "53012919750312123A",
        "5301291975031212X9",
        "X30129197503121239",
        "53012919750A121239",
        "530129-97503121239",
    ],
)
def test_letters_in_the_body_are_rejected(value: str) -> None:
    assert _rejection(value).type == "id_number_format"


@pytest.mark.parametrize(
    "value",
    ["530129197503121238", "530129197503121230", "110105194912310021", "53012919750312123X"],
)
def test_wrong_check_character_is_rejected(value: str) -> None:
    assert _rejection(value).type == "id_number_checksum"


@pytest.mark.parametrize(
    "birth",
    ["19751312", "19750230", "19750001", "19750100", "19990229"],
)
def test_impossible_birth_date_is_rejected(birth: str) -> None:
    number = _with_check_char("530129" + birth + "123")
    assert _rejection(number).type == "id_number_birth_date"


def test_birth_date_in_the_future_is_rejected() -> None:
    next_year = date.today().year + 1
    number = _with_check_char(f"530129{next_year}0101123")
    assert _rejection(number).type == "id_number_birth_date"


def test_birth_date_before_1900_is_rejected() -> None:
    number = _with_check_char("11010518991231002")
    assert _rejection(number).type == "id_number_birth_date"


def test_leap_day_birth_date_is_accepted() -> None:
    number = _with_check_char("53012920000229123")
    assert normalize_resident_id(number) == number


@pytest.mark.parametrize("region", ["539999", "000000", "990101"])
def test_unknown_address_code_is_rejected(region: str) -> None:
    number = _with_check_char(region + "19750312123")
    assert _rejection(number).type == "id_number_region"


def test_province_only_address_code_is_rejected() -> None:
    number = _with_check_char("53000019750312123")
    assert _rejection(number).type == "id_number_region"


def test_checks_run_in_order_length_before_format() -> None:
    # a short value with letters reports the length, not the format
    assert _rejection("ABC").type == "id_number_length"


# --- mobile ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "13812345678",
        "+8613812345678",
        "138-1234-5678",
        "138 1234 5678",
        " 13812345678 ",
        "+86 138-1234-5678",
    ],
)
def test_valid_mobiles_are_normalised(value: str) -> None:
    assert normalize_mobile(value) == "13812345678"


@pytest.mark.parametrize("value", ["19912345678", "15000000000"])
def test_other_prefixes_are_accepted(value: str) -> None:
    assert normalize_mobile(value) == value


@pytest.mark.parametrize(
    "value",
    [
        "12812345678",
        "10812345678",
        "1381234567",
        "138123456789",
        "abc",
        "",
        "23812345678",
        "1381234567a",
        "+8513812345678",
    ],
)
def test_invalid_mobiles_are_rejected(value: str) -> None:
    assert _rejection(value, normalize_mobile).type == "phone_invalid"


def test_full_width_digits_are_normalised() -> None:
    assert normalize_mobile("138１２３４５６７８") == "13812345678"


def test_non_ascii_digits_of_other_scripts_are_rejected() -> None:
    with pytest.raises(PydanticCustomError) as exc_info:
        normalize_mobile("138١٢٣٤٥٦٧٨")  # NFKC keeps Arabic-Indic digits
    assert exc_info.value.type == "phone_invalid"
