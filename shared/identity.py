"""Checks for personal identifiers: resident ID (GB 11643) and mainland mobile numbers.

Raise `PydanticCustomError` with a stable code and a Chinese message, so a schema's field
validator can use them directly and the error handler reports them as they are.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from datetime import date

from pydantic_core import PydanticCustomError
from stdnum import numdb
from stdnum.cn import ric
from stdnum.exceptions import ValidationError

_MOBILE = re.compile(r"^1[3-9][0-9]{9}$")
_BODY = re.compile(r"[0-9]{17}[0-9X]")


def normalize_resident_id(value: str) -> str:
    """Validated 18-character resident ID, upper-case X, or a `PydanticCustomError`.

    python-stdnum checks length, digits, the check character and the birth date. Its
    `validate` also insists that the address code existed in the birth year, but the code is
    given at first registration, not at birth: someone born in 1975 who registered in 寻甸
    (530129, created 1998) holds a real number that rule refuses. So we ask only that the
    address code is known to the division list, in any period.
    """
    number = ric.compact(value).upper()
    if len(number) != 18:
        raise PydanticCustomError("id_number_length", "身份证号码应为18位")
    # ASCII digits only: str.isdigit() also accepts ² and ①, which int() does not.
    if not _BODY.fullmatch(number):
        raise PydanticCustomError("id_number_format", "身份证号码只能由数字和末位的X组成")
    if number[-1] != ric.calc_check_digit(number):
        raise PydanticCustomError("id_number_checksum", "身份证号码校验位不正确，请核对后重新输入")
    try:
        birth = ric.get_birth_date(number)
    except ValidationError as exc:
        raise PydanticCustomError("id_number_birth_date", "身份证号码中的出生日期无效") from exc
    if not date(1900, 1, 1) <= birth <= date.today():
        raise PydanticCustomError("id_number_birth_date", "身份证号码中的出生日期无效")
    if not _known_address_code(number[:6]):
        raise PydanticCustomError("id_number_region", "身份证号码中的地区码无效")
    return number


# Bounded: the list has ~6,700 codes, but a caller may send any six digits.
@functools.lru_cache(maxsize=8192)
def _known_address_code(code: str) -> bool:
    """The six digits name a division below the province. stdnum's data labels provinces
    too, so a bare province code (xx0000) is refused here. Prefecture-level codes stay
    allowed: cities without counties (e.g. 东莞 441900) issue IDs with them. Remembered:
    stdnum walks its prefix tree in Python on every lookup."""
    if code.endswith("0000"):
        return False
    return any("county" in props for _, props in numdb.get("cn/loc").info(code)[1:])


def normalize_mobile(value: str) -> str:
    # Chinese input methods often type full-width digits (１３８…): read them as digits.
    number = unicodedata.normalize("NFKC", value).strip().replace(" ", "").replace("-", "")
    if number.startswith("+86"):
        number = number[3:]
    if not _MOBILE.fullmatch(number):
        raise PydanticCustomError("phone_invalid", "手机号码应为11位数字，以1开头")
    return number
