"""wrk scripts: each request a new body with a valid, unique resident ID (GB 11643 check
character computed in Lua), a citizen token from a pool, a unique Idempotency-Key."""

from __future__ import annotations

import json

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
    form_json = json.dumps(form, ensure_ascii=False).replace("\\", "\\\\").replace('"', '\\"')
    return (
        _COMMON
        + _ID_NUMBER
        + f"local first = {int(first)}\n"
        + f"local tokens = {token_table}\n"
        + f'local form = "{form_json}"\n'
        + r"""
function request()
  counter = counter + 1
  local n = first + thread_no * 10000000 + counter
  local body = string.format(
    '{"item_code":"medical_assistance","applicant":{"name":"压测用户","id_number":"%s",' ..
    '"phone":"139%08d"},"household":{"region_code":"530129","township":"仁德街道",' ..
    '"village":"北大营村","address":"北大营村3组12号","size":4,' ..
    '"annual_income_per_capita":6200,"category":"marginal"},' ..
    '"description":"家中老人住院，自付医疗费用高，生活困难。","form":%s}',
    id_number(n), n % 100000000, form)
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
    return (
        _COMMON
        + _ID_NUMBER
        + r"""
function request()
  counter = counter + 1
  local n = thread_no * 10000000 + counter
  local body = string.format(
    '{"name":"压测用户","id_number":"%s","phone":"139%08d","region_code":"530129","amount":6200}',
    id_number(n), n % 100000000)
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
end
"""
    )
