"""Long fuzzing profile: runs tests/test_fuzz.py with TEXTGEN_FUZZ_PROFILE=long (300 cases per
property, a 50 MB line) and prints JSON: the cases run and failed per property, and for each
property that failed, the end of its report (hypothesis's smallest failing case).

Usage (pytest's own output goes to stderr):
    OMP_NUM_THREADS=1 taskset -c 0 python tests/fuzz_long.py [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from contextlib import redirect_stdout
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent / "test_fuzz.py"


class Collect:
    """A pytest plugin that keeps the fuzz module (for its counters) and the reports of failed tests."""

    def __init__(self) -> None:
        self.module = None
        self.failures: dict[str, str] = {}

    def pytest_collection_modifyitems(self, items) -> None:
        self.module = items[0].module

    def pytest_runtest_logreport(self, report) -> None:
        if report.failed:
            self.failures[report.nodeid.split("::")[-1]] = report.longreprtext[-3000:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0, help="hypothesis seed, so a run can be repeated")
    args = parser.parse_args()
    os.environ["TEXTGEN_FUZZ_PROFILE"] = "long"
    collect = Collect()
    started = time.monotonic()
    with redirect_stdout(sys.stderr):
        status = pytest.main([str(TESTS), "-q", "-p", "no:cacheprovider", f"--hypothesis-seed={args.seed}"],
                             plugins=[collect])
    cases, failed = dict(collect.module.CASES), dict(collect.module.FAILED)
    print(json.dumps({"profile": "long", "seed": args.seed, "cases": sum(cases.values()),
                      "failed_cases": sum(failed.values()), "cases_by_property": cases,
                      "cases_by_exit_status": dict(collect.module.STATUSES),
                      "failed_properties": collect.failures, "pytest_status": int(status),
                      "seconds": round(time.monotonic() - started, 1)}, indent=2))
    sys.exit(0 if status == 0 else 1)


if __name__ == "__main__":
    main()
