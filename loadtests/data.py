"""What the simulated citizens and grid workers send: realistic, valid application bodies.

Every body is built from the shipped data the services themselves load — the catalog (items
and their forms) and the Yunnan region table — so it stays valid when the province changes
them: forms are filled from each field's spec, with plausible values where the field is known
and in-bounds generic ones where it is not. `tests/unit/test_loadtests.py` checks the bodies
against the real API schema and form validation.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from stdnum.cn import ric

from shared.catalog import FieldType, FormField, Item, catalog
from shared.regions import regions

# Shares of the 15 items among applications. The seeds give no per-item numbers; these follow
# what rural households mostly ask for (低保, 医疗救助, 临时救助, 住房安全 first) and sum to 1.
ITEM_SHARES: dict[str, float] = {
    "subsistence_allowance": 0.22,
    "medical_assistance": 0.16,
    "temporary_assistance": 0.14,
    "housing_safety": 0.10,
    "serious_illness_care": 0.05,
    "disability_subsidy": 0.05,
    "employment_assistance": 0.05,
    "public_welfare_job": 0.04,
    "insurance_subsidy": 0.04,
    "student_aid": 0.04,
    "destitute_support": 0.03,
    "drinking_water": 0.03,
    "family_doctor": 0.02,
    "skills_training": 0.02,
    "dropout_prevention": 0.01,
}

# The county of the demo clerks (`relief up` seeds `<dept>-clerk` accounts there). Only its
# cases can be worked by the load test's clerks, so it gets a larger share than its
# population would give it; the rest spreads evenly over the other 128 counties.
CLERK_COUNTY = "530129"
DEFAULT_CLERK_COUNTY_SHARE = 0.25

CATEGORY_SHARES: dict[str, float] = {
    "marginal": 0.30,
    "unstable_formerly_poor": 0.20,
    "sudden_hardship": 0.20,
    "formerly_poor": 0.15,
    "ordinary": 0.15,
}
# Per-capita income as a multiple of the monitoring line (8,050 yuan in 2023), by category.
MONITORING_LINE_YUAN = 8050
_INCOME_FACTORS: dict[str, tuple[float, float]] = {
    "marginal": (0.7, 1.5),
    "unstable_formerly_poor": (0.6, 1.3),
    "sudden_hardship": (0.3, 1.8),
    "formerly_poor": (0.8, 2.0),
    "ordinary": (0.9, 3.0),
}
_HOUSEHOLD_SIZES = (1, 2, 3, 4, 5, 6, 7, 8)
_HOUSEHOLD_SIZE_WEIGHTS = (6, 12, 18, 24, 20, 11, 6, 3)

_SURNAMES = (
    "王李张刘陈杨赵黄周吴徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董潘袁蔡蒋余"
    "于杜叶程魏苏吕丁任沈姚卢钟姜崔谭陆范汪廖石金韦贾夏付方邹熊白孟秦邱侯江尹薛闫段雷"
    "龙黎史陶贺毛郝顾龚邵万覃武钱戴严莫孔向常汤康易乔赖文施洪"
)
_GIVEN = (
    "国华建明文丽芳军平红英秀兰玉梅德林永强志勇春燕海云金学成兴发光福荣桂珍正清忠富贵"
    "才美琼艳涛斌杰磊"
)
_MOBILE_PREFIXES = ("133", "135", "136", "138", "139", "150", "151", "152", "157", "158", "159",
                    "170", "173", "177", "180", "181", "182", "183", "187", "188", "189", "191",
                    "198", "199")  # fmt: skip
# Township and village names of the demo county (寻甸); elsewhere names are composed.
_XUNDIAN_TOWNSHIPS = ("仁德街道", "塘子街道", "金所街道", "羊街镇", "柯渡镇", "倘甸镇",
                      "功山镇", "河口镇", "七星镇", "先锋镇", "鸡街镇", "凤合镇", "六哨乡",
                      "联合乡", "甸沙乡", "金源乡")  # fmt: skip
_PLACE_HEADS = "新大小上下中东西南北龙凤马石河沙田水山松竹清云白黑红青安平"
_PLACE_TAILS = "坝营寨坡箐沟村庄河塘哨街冲湾"
_VILLAGE_SUFFIX = ("村", "村委会", "社区")


def _weighted(rng: random.Random, shares: Mapping[str, float]) -> str:
    return rng.choices(list(shares), weights=list(shares.values()))[0]


def choose_item(rng: random.Random) -> str:
    return _weighted(rng, ITEM_SHARES)


def county_codes() -> list[str]:
    return sorted(regions().counties)


def choose_county(
    rng: random.Random, clerk_county_share: float = DEFAULT_CLERK_COUNTY_SHARE
) -> str:
    if rng.random() < clerk_county_share:
        return CLERK_COUNTY
    others = [code for code in county_codes() if code != CLERK_COUNTY]
    return rng.choice(others)


def person_name(rng: random.Random) -> str:
    given = "".join(rng.choice(_GIVEN) for _ in range(rng.choice((1, 2, 2))))
    return rng.choice(_SURNAMES) + given


def mobile(rng: random.Random) -> str:
    return rng.choice(_MOBILE_PREFIXES) + f"{rng.randrange(10**8):08d}"


def resident_id(
    rng: random.Random, region_code: str, *, min_age: int = 16, max_age: int = 85
) -> str:
    """A valid 18-character resident ID (GB 11643) registered in `region_code`."""
    today = china_today()
    birth = today - timedelta(days=rng.randint(min_age * 365 + 5, max_age * 365))
    body = f"{region_code}{birth:%Y%m%d}{rng.randrange(1000):03d}"
    return body + ric.calc_check_digit(body + "0")


def china_today() -> date:
    """Today in Beijing time, as the services count dates (`max_date = "today"`)."""
    return (datetime.now(UTC) + timedelta(hours=8)).date()


def _place(rng: random.Random, length: int = 2) -> str:
    return "".join(rng.choice(_PLACE_HEADS) for _ in range(length - 1)) + rng.choice(_PLACE_TAILS)


def household(rng: random.Random, region_code: str) -> dict[str, Any]:
    if region_code == CLERK_COUNTY:
        township = rng.choice(_XUNDIAN_TOWNSHIPS)
    else:
        township = _place(rng, rng.choice((2, 3))) + rng.choice(("镇", "乡", "街道"))
    village = _place(rng, rng.choice((2, 3)))
    village_name = village + rng.choice(_VILLAGE_SUFFIX)
    category = _weighted(rng, CATEGORY_SHARES)
    low, high = _INCOME_FACTORS[category]
    income = round(MONITORING_LINE_YUAN * rng.uniform(low, high) / 10) * 10
    return {
        "region_code": region_code,
        "township": township,
        "village": village_name,
        "address": f"{village_name}{rng.randint(1, 12)}组{rng.randint(1, 80)}号",
        "size": rng.choices(_HOUSEHOLD_SIZES, weights=_HOUSEHOLD_SIZE_WEIGHTS)[0],
        "annual_income_per_capita": income,
        "category": category,
    }


_DESCRIPTIONS: dict[str, tuple[str, ...]] = {
    "subsistence_allowance": (
        "家里劳动力少，老人常年生病，收入不够日常开支，申请低保。",
        "丈夫去年因病去世，我一个人带两个孩子上学，家庭收入很低。",
    ),
    "destitute_support": ("老人无儿无女，年老体弱，生活不能完全自理，申请特困供养。",),
    "temporary_assistance": (
        "家中突发火灾，房屋和粮食被烧，眼下吃住都有困难。",
        "家人突发重病住院，外出务工收入中断，急需临时救助。",
    ),
    "disability_subsidy": ("家中有重度残疾人，需要长期护理，申请残疾人两项补贴。",),
    "employment_assistance": ("家里两个劳动力在家没有活干，想找附近的工作。",),
    "public_welfare_job": ("要照顾生病的老人，不能外出打工，想申请村里的公益性岗位。",),
    "skills_training": ("想学一门手艺好找工作，申请职业技能培训补贴。",),
    "serious_illness_care": ("家人确诊大病，治疗费用高，申请大病专项救治。",),
    "family_doctor": ("家里有老人和慢性病人，想签约家庭医生，方便看病。",),
    "medical_assistance": (
        "家中老人住院，自付医疗费用较多，生活困难。",
        "孩子住院做手术，医保报销后自付部分家里负担不起。",
    ),
    "insurance_subsidy": ("家庭困难，今年的医保费交不起，申请参保资助。",),
    "dropout_prevention": ("孩子这学期没去上学，家里劝不回去，请帮忙。",),
    "student_aid": ("孩子在读书，家庭收入低，申请学生资助。",),
    "housing_safety": (
        "住的土木房子墙体开裂，雨季漏雨，担心倒塌，申请危房改造。",
        "地震后房屋受损严重，一家人住着不安全。",
    ),
    "drinking_water": ("村里自来水管坏了一个多月，要到很远的地方挑水吃。",),
}

_SAMPLE_TEXT: dict[str, tuple[str, ...]] = {
    "hospital_name": ("寻甸县人民医院", "昆明医科大学第一附属医院", "曲靖市第一人民医院",
                      "大理州人民医院", "县中医医院", "乡镇卫生院"),
    "diagnosing_hospital": ("云南省第一人民医院", "昆明医科大学第二附属医院", "县人民医院"),
    "disease": ("肺癌", "尿毒症", "白血病", "脑梗塞", "乳腺癌", "先天性心脏病", "重度精神障碍"),
    "school_name": ("仁德镇中心小学", "县第一中学", "县职业高级中学", "乡中心学校", "县民族中学"),
    "skills": ("会开拖拉机，会砌墙", "会做饭", "会种烤烟", "会电焊", "没有什么手艺"),
    "training_school": ("县职业技能培训中心", "州技工学校", "县就业服务中心"),
    "preferred_clinic": ("村卫生室", "乡镇卫生院", "社区卫生服务站"),
    "supporter_situation": ("唯一的女儿嫁到外省，自己也有病，无力赡养。",
                            "侄子外出打工，很少回家。"),
}  # fmt: skip
_PERSON_FIELDS = frozenset(
    {"disabled_person_name", "worker_name", "trainee_name", "patient_name", "student_name"}
)


def _date_between(
    rng: random.Random, spec: FormField, newest_days_ago: int, oldest_days_ago: int
) -> str:
    today = china_today()
    newest = today - timedelta(days=newest_days_ago)
    oldest = today - timedelta(days=oldest_days_ago)
    if spec.min_date is not None and oldest < spec.min_date:
        oldest = spec.min_date
    latest = spec.max_date if isinstance(spec.max_date, date) else today
    newest = min(newest, latest)
    oldest = min(oldest, newest)
    return (oldest + timedelta(days=rng.randint(0, (newest - oldest).days))).isoformat()


def _clamp_int(spec: FormField, value: int) -> int:
    low = int(spec.min) if spec.min is not None else value
    high = int(spec.max) if spec.max is not None else value
    return max(low, min(high, value))


def _money(spec: FormField, value: float) -> str:
    amount = Decimal(str(value)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    places = spec.max_decimal_places if spec.max_decimal_places is not None else 2
    amount = amount.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    if spec.min is not None:
        amount = max(amount, Decimal(spec.min))
    if spec.max is not None:
        amount = min(amount, Decimal(spec.max))
    return f"{amount:f}"


def _integer(rng: random.Random, spec: FormField, size: int) -> int:
    if spec.unit == "人":
        return _clamp_int(spec, rng.randint(int(spec.min or 0), max(int(spec.min or 0), size)))
    if spec.unit == "岁":
        return _clamp_int(spec, rng.randint(18, 62))
    if spec.unit == "年":
        year = china_today().year
        if spec.name == "insurance_year":
            return _clamp_int(spec, year + rng.choice((0, 0, 1)))
        return _clamp_int(spec, rng.randint(1965, year - 5))
    if spec.unit == "户":
        return _clamp_int(spec, rng.randint(1, 60))
    low = int(spec.min) if spec.min is not None else 0
    high = int(spec.max) if spec.max is not None else low + 10
    return rng.randint(low, min(high, low + 10))


_AMOUNTS: dict[str, tuple[float, float]] = {
    "amount_needed": (2_000, 50_000),
    "total_medical_cost": (5_000, 300_000),
    "amount_paid": (200, 1_500),
}


def _decimal(rng: random.Random, spec: FormField, form: Mapping[str, Any]) -> str:
    total = form.get("total_medical_cost")
    if spec.name == "out_of_pocket_cost" and total is not None:
        return _money(spec, float(total) * rng.uniform(0.25, 0.6))
    if spec.name == "insurance_reimbursed" and total is not None:
        return _money(spec, float(total) * rng.uniform(0.3, 0.6))
    low, high = _AMOUNTS.get(spec.name, (100, 20_000))
    return _money(spec, rng.uniform(low, high))


def _text(rng: random.Random, spec: FormField, county: str) -> str:
    if spec.name in _PERSON_FIELDS:
        value = person_name(rng)
    elif spec.name in ("hospital_name", "diagnosing_hospital") and rng.random() < 0.4:
        value = f"{regions().counties[county].name}人民医院"
    elif spec.name in _SAMPLE_TEXT:
        value = rng.choice(_SAMPLE_TEXT[spec.name])
    else:
        value = "情况属实，请工作人员核实。"
    if spec.min_length is not None and len(value) < spec.min_length:
        value = value + "。" * (spec.min_length - len(value))
    return value[: spec.max_length] if spec.max_length is not None else value


def _date(rng: random.Random, spec: FormField, form: Mapping[str, Any]) -> str:
    if spec.name == "discharged_on" and isinstance(form.get("hospitalized_from"), str):
        start = date.fromisoformat(form["hospitalized_from"])
        days = (china_today() - start).days
        return (start + timedelta(days=rng.randint(0, max(0, days)))).isoformat()
    if spec.name in ("certificate_issued_on", "finished_on"):
        return _date_between(rng, spec, 30, 3650)
    return _date_between(rng, spec, 1, 120)


_BOOLEAN_TRUE_SHARE = {"owns_car_or_town_house": 0.03, "has_supporter": 0.3, "only_house": 0.85}


def _answer(
    rng: random.Random, spec: FormField, form: Mapping[str, Any], household_size: int, county: str
) -> Any:
    match spec.type:
        case FieldType.STRING | FieldType.TEXT:
            return _text(rng, spec, county)
        case FieldType.INTEGER:
            return _integer(rng, spec, household_size)
        case FieldType.DECIMAL:
            return _decimal(rng, spec, form)
        case FieldType.DATE:
            return _date(rng, spec, form)
        case FieldType.BOOLEAN:
            return rng.random() < _BOOLEAN_TRUE_SHARE.get(spec.name, 0.5)
        case FieldType.CHOICE:
            return rng.choice(spec.choice_values())
    raise ValueError(f"no answer for a {spec.type} field")


def sample_form(
    rng: random.Random, item: Item, *, household_size: int = 4, county: str = CLERK_COUNTY
) -> dict[str, Any]:
    """Answers to `item`'s form: every required question, most optional ones."""
    form: dict[str, Any] = {}
    for spec in item.fields:
        if not spec.required and rng.random() < 0.4:
            continue
        form[spec.name] = _answer(rng, spec, form, household_size, county)
    return form


def application_body(
    rng: random.Random,
    *,
    item_code: str | None = None,
    region_code: str | None = None,
    clerk_county_share: float = DEFAULT_CLERK_COUNTY_SHARE,
) -> dict[str, Any]:
    """One `POST /applications` body: who applies, the household, the item and its form."""
    code = item_code or choose_item(rng)
    item = catalog().item(code)
    if item is None:
        raise KeyError(f"item {code} is not in the catalog")
    county = region_code or choose_county(rng, clerk_county_share)
    home = household(rng, county)
    descriptions = _DESCRIPTIONS.get(code, ("家庭生活困难，申请救助。",))
    return {
        "item_code": code,
        "applicant": {
            "name": person_name(rng),
            "id_number": resident_id(rng, county),
            "phone": mobile(rng),
        },
        "household": home,
        "description": rng.choice(descriptions),
        "form": sample_form(rng, item, household_size=home["size"], county=county),
    }


def photo(rng: random.Random) -> bytes:
    """A phone photo as the mini-program uploads it (compressed): JPEG magic, random body."""
    size = rng.randint(30_000, 150_000)
    return b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + rng.randbytes(size)
