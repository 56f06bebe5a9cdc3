"""scripts/ holds the benchmarks behind the published figures, each on the one harness
(scripts/harness.py: --quick, --out, the CPU named in a JSON report); the tests depend on none of it."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = sorted((ROOT / "scripts").glob("bench_*.py"))


def test_every_benchmark_answers_help_with_the_harness_options():
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    # all at once: each spends its second or two importing torch
    running = {path.stem: subprocess.Popen([sys.executable, str(path), "--help"], stdout=subprocess.PIPE,
                                           stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
               for path in BENCHMARKS}
    assert len(running) >= 10
    for name, process in running.items():
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, f"scripts/{name}.py --help exited {process.returncode}:\n{err[-2000:]}"
        assert "--quick" in out and "--out FILE.json" in out, f"scripts/{name}.py: build it on scripts/harness.py"


def test_no_test_imports_or_runs_anything_from_scripts():
    names = {path.stem for path in (ROOT / "scripts").glob("*.py")}
    for path in sorted((ROOT / "tests").glob("*.py")):
        if path.name == Path(__file__).name:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        prose = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr)}  # docstrings may say it
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                modules = [node.module or ""]
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in prose:
                assert node.value != "scripts" and "scripts/" not in node.value, \
                    f"{path.name}:{node.lineno} names scripts/: a test needs nothing from there"
                continue
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                assert top != "scripts" and top not in names, f"{path.name}:{node.lineno} imports {module}"
