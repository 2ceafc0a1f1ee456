"""relief bench reads wrk's report correctly and writes scripts wrk can run; a home holds
one bench or replay platform at a time."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from services.bench.instructions import baseline_request, intake_request, resident_id
from services.bench.lua import baseline_body, body_format, intake_body, intake_script
from services.bench.runner import parse_wrk
from services.bench.system import PlatformBusy, only_run
from shared.identity import normalize_resident_id

WRK_OUTPUT = """Running 15s test @ http://127.0.0.1:40123/baseline
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    15.20ms    4.10ms  90.00ms   80.00%
    Req/Sec     2.10k   150.00     2.40k    70.00%
  Latency Distribution
     50%   14.00ms
     75%   17.00ms
     90%   21.50ms
     99%  950.00us
  31500 requests in 15.00s, 6.00MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 7
Requests/sec:   2100.00
Transfer/sec:    409.60KB
"""


def test_wrk_report_is_read() -> None:
    result = parse_wrk(WRK_OUTPUT, 32, 15)
    assert result.requests_per_second == 2100.0
    assert (result.p50_ms, result.p90_ms) == (14.0, 21.5)
    assert result.p99_ms == pytest.approx(0.95)  # microseconds read as milliseconds
    assert result.requests == 31500
    assert result.non_2xx == 7
    assert result.socket_errors == 3
    assert result.ok_per_second == pytest.approx((31500 - 7) / 15, abs=0.1)


def test_intake_script_builds_unique_valid_ids() -> None:
    script = intake_script(["t"], {"x": 1})
    assert "530129" in script
    assert "10X98765432" in script  # the GB 11643 check characters
    assert '"Idempotency-Key"' in script


def test_each_load_level_numbers_its_requests_afresh() -> None:
    first, second = intake_script(["t"], {}, first=0), intake_script(["t"], {}, first=1_000_000)
    assert "local first = 0\n" in first
    assert "local first = 1000000\n" in second
    assert 'string.format("bench-%010d", n)' in second  # keys follow the same numbering


def test_a_home_runs_one_platform_at_a_time(tmp_path: Path) -> None:
    busy = pytest.raises(PlatformBusy, match="another relief replay or bench")
    with only_run(tmp_path), busy, only_run(tmp_path):
        pass
    with only_run(tmp_path):  # free again once the first run ended
        pass


def test_the_instruction_bench_numbers_valid_distinct_ids() -> None:
    numbers = [resident_id(n) for n in range(0, 16_800_000, 4_999)]
    assert all(normalize_resident_id(n) == n for n in numbers)  # as intake checks them
    assert len(set(numbers)) == len(numbers)


def test_the_wrk_scripts_and_the_instruction_bench_send_the_same_bodies() -> None:
    form: dict[str, object] = {
        "note": '100% 自付 "急" \\ 路'
    }  # what the formats and Lua's quoting must keep
    id_number = resident_id(7)
    for template, expected in [
        (intake_body("@@ID@@", "@@PHONE@@", form), intake_body(id_number, "13900000007", form)),
        (baseline_body("@@ID@@", "@@PHONE@@"), baseline_body(id_number, "13900000007")),
    ]:
        # Lua's string.format reads %s and %08d as Python's % does.
        assert json.loads(body_format(template) % (id_number, 7)) == expected
    headers, body = intake_request(7, "token", form)
    assert json.loads(body) == intake_body(id_number, "13900000007", form)
    assert headers["Idempotency-Key"] == "bench-0000000007"
    assert json.loads(baseline_request(7)[1]) == baseline_body(id_number, "13900000007")


def test_the_wrk_script_quotes_its_body_template_as_lua_reads_it() -> None:
    form: dict[str, object] = {"note": '100% 自付 "急" \\ 路'}
    line = next(
        line
        for line in intake_script(["t"], form).splitlines()
        if line.startswith("local template = ")
    )
    # A Lua string in double quotes reads \" and \\ as a Python literal does.
    quoted = line.removeprefix("local template = ")
    assert ast.literal_eval(quoted) == body_format(intake_body("@@ID@@", "@@PHONE@@", form))
