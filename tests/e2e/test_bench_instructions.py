"""`relief bench --instructions` as a process: intake and the baseline under callgrind, the
counted requests answered 201, and a count that covers those requests and not the start."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not shutil.which("valgrind"), reason="valgrind is not installed"),
]

REQUESTS = 6


def test_instructions_per_submission_are_counted(server_home: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELIEF_")}
    finished = subprocess.run(
        [
            *(sys.executable, "-m", "services.cli", "bench", "--instructions"),
            *("--requests", str(REQUESTS), "--warmup", "10"),
            *("--home", str(server_home), "--out-dir", str(tmp_path)),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-5000:]

    (report_file,) = tmp_path.glob("instructions-*.json")
    report = json.loads(report_file.read_text())
    intake, baseline = report["per_request"]["intake"], report["per_request"]["baseline"]
    # A request costs millions of instructions; the start (imports, migrations checked,
    # pools opened) costs billions, so a count that included it would be far above this.
    assert 500_000 < baseline < intake < 50_000_000
    assert report["ratio_to_baseline"] == round(intake / baseline, 2)
    for server, per_request in report["per_request"].items():
        total = re.search(r"^totals: (\d+)", Path(report["profiles"][server]).read_text(), re.M)
        assert total is not None
        assert int(total.group(1)) // REQUESTS == per_request
    assert f"intake {intake:,}" in finished.stdout
