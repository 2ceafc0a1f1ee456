"""The bench's requests: the bodies, and the wrk scripts that send them, each request a new
body with a valid, unique resident ID (GB 11643 check character computed in Lua), a citizen
token from a pool, a unique Idempotency-Key. `relief bench --instructions` sends the same
bodies from Python."""

from __future__ import annotations

import json
from typing import Any

_ID_PLACEHOLDER, _PHONE_PLACEHOLDER = "@@ID@@", "@@PHONE@@"


def intake_body(id_number: str, phone: str, form: dict[str, object]) -> dict[str, Any]:
    """The bench's application: medical assistance for a marginal household of 530129."""
    return {
        "item_code": "medical_assistance",
        "applicant": {"name": "压测用户", "id_number": id_number, "phone": phone},
        "household": {
            "region_code": "530129",
            "township": "仁德街道",
            "village": "北大营村",
            "address": "北大营村3组12号",
            "size": 4,
            "annual_income_per_capita": 6200,
            "category": "marginal",
        },
        "description": "家中老人住院，自付医疗费用高，生活困难。",
        "form": form,
    }


def baseline_body(id_number: str, phone: str) -> dict[str, Any]:
    return {
        "name": "压测用户",
        "id_number": id_number,
        "phone": phone,
        "region_code": "530129",
        "amount": 6200,
    }


def to_json(body: dict[str, Any]) -> str:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


def body_format(body: dict[str, Any]) -> str:
    """`body` (built with `@@ID@@` and `@@PHONE@@` for the ID number and phone) as a
    printf format of its JSON, the same in Lua's string.format and Python's `%`: the ID
    number a `%s`, the phone `139` and a `%08d`."""
    text = to_json(body).replace("%", "%%")
    return text.replace(_ID_PLACEHOLDER, "%s").replace(_PHONE_PLACEHOLDER, "139%08d")


def _lua_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


_ID_NUMBER = r"""
local weights = {7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2}
local checks = "10X98765432"
local function id_number(n)
  -- a distinct birth date (1950-1999, days 1-28 of each month: every one exists) and
  -- sequence number per n
  local day_index = n % 16800
  local seq = (math.floor(n / 16800) + thread_no * 100) % 1000
  local year = 1950 + math.floor(day_index / 336)
  local month = math.floor((day_index % 336) / 28) + 1
  local day = day_index % 28 + 1
  local body = string.format("530129%04d%02d%02d%03d", year, month, day, seq)
  local sum = 0
  for i = 1, 17 do sum = sum + tonumber(body:sub(i, i)) * weights[i] end
  local r = sum % 11 + 1
  return body .. checks:sub(r, r)
end
"""

_COMMON = r"""
thread_no = 0
counter = 0
local threads = {}
function setup(thread)
  thread:set("thread_no", #threads)
  table.insert(threads, thread)
end
"""


def intake_script(tokens: list[str], form: dict[str, object], *, first: int = 0) -> str:
    """`first`: where this run's numbering starts. Each load level of a run gets its own
    range, so no request repeats an earlier one's ID number or Idempotency-Key (a repeat
    would be answered from the idempotency record, which is cheaper, and flatter us)."""
    token_table = "{" + ",".join(json.dumps(t) for t in tokens) + "}"
    template = body_format(intake_body(_ID_PLACEHOLDER, _PHONE_PLACEHOLDER, form))
    return (
        _COMMON
        + _ID_NUMBER
        + f"local first = {int(first)}\n"
        + f"local tokens = {token_table}\n"
        + f"local template = {_lua_string(template)}\n"
        + r"""
function request()
  counter = counter + 1
  local n = first + thread_no * 10000000 + counter
  local body = string.format(template, id_number(n), n % 100000000)
  local headers = {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. tokens[(n % #tokens) + 1],
    ["Idempotency-Key"] = string.format("bench-%010d", n),
  }
  return wrk.format("POST", nil, headers, body)
end
"""
    )


def baseline_script() -> str:
    template = body_format(baseline_body(_ID_PLACEHOLDER, _PHONE_PLACEHOLDER))
    return (
        _COMMON
        + _ID_NUMBER
        + f"local template = {_lua_string(template)}\n"
        + r"""
function request()
  counter = counter + 1
  local n = thread_no * 10000000 + counter
  local body = string.format(template, id_number(n), n % 100000000)
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
end
"""
    )
