"""The cold path (STYLE.md 15): each quick command imports only what it uses, so that `textgen sample`
costs little more than `import torch`. Each command runs as a user runs it, in a fresh interpreter that
writes down every module it imported as it exits."""

from __future__ import annotations

import subprocess
import sys

import pytest

# `python -c RECORDER OUT ARGS...` runs `python -m textgen ARGS...` and writes sorted(sys.modules) to OUT at exit.
RECORDER = ("import atexit, runpy, sys; out = sys.argv.pop(1); "
            "atexit.register(lambda: open(out, 'w').write('\\n'.join(sorted(sys.modules)))); "
            "runpy.run_module('textgen', run_name='__main__', alter_sys=True)")

# What each costs a cold start on a 2-core AMD EPYC, and where it belongs instead.
HEAVY = {
    "torch._dynamo": "torch.compile's tracer: 1.1 s with sympy",
    "torch._inductor": "torch.compile's code generator",
    "sympy": "symbolic shapes, for torch.compile: 0.45 s",
    "datasets": "corpus reading: 0.5 s with pandas and pyarrow",
    "pandas": "datasets' tables",
    "pyarrow": "datasets' storage",
    "matplotlib": "textgen plot and memory --plot",
    "rich.progress": "progress bars of training and labelling files",
    "pygments": "rich's syntax highlighting",
}
CHAR_MODEL = {"sentencepiece": "subword tokenizers; the shakespeare model reads characters"}
TRAINING = {
    "textgen.recipes.train": "the training recipe: the sampler never imports the trainer",
    "textgen.training.trainer": "the training loop",
}


def imported(args: list[str], tmp_path) -> set[str]:
    """The modules `textgen ARGS` imported, run as a user runs it from an empty folder."""
    out = tmp_path / "modules.txt"
    result = subprocess.run([sys.executable, "-c", RECORDER, str(out), *args], cwd=tmp_path, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return set(out.read_text().split())


@pytest.fixture(scope="module")
def torch_modules() -> set[str]:
    """The modules `import torch` alone loads: torch 2.x brings part of torch.distributed itself."""
    result = subprocess.run([sys.executable, "-c", "import sys, torch; print(' '.join(sys.modules))"],
                            capture_output=True, text=True, check=True, timeout=300)
    return set(result.stdout.split())


def loaded(modules: set[str], names: dict[str, str]) -> list[str]:
    """Those of `names` (packages count with their submodules) found in `modules`, with why each is heavy."""
    return [f"{name} ({why})" for name, why in names.items()
            if any(module == name or module.startswith(name + ".") for module in modules)]


COMMANDS = {
    "sample": (["sample", "--length", "10", "--model", "shakespeare", "--seed", "0"], {**HEAVY, **CHAR_MODEL}),
    "complete": (["complete", "x"], {**HEAVY, **CHAR_MODEL}),
    "eval --text": (["eval", "--text", "x"], {**HEAVY, **CHAR_MODEL}),
    "classify": (["classify", "x"], HEAVY),
    "models": (["models"], HEAVY),
}


@pytest.mark.slow
@pytest.mark.parametrize("command", COMMANDS)
def test_a_quick_command_imports_none_of_the_heavy_modules(command, tmp_path, torch_modules):
    args, forbidden = COMMANDS[command]
    modules = imported(args, tmp_path)
    assert loaded(modules, forbidden) == []
    assert sorted(m for m in modules - torch_modules if m.startswith("torch.distributed")) == []


def test_help_imports_no_torch(tmp_path):
    modules = imported(["--help"], tmp_path)
    assert loaded(modules, {**HEAVY, "torch": "1.3 s", "numpy": "0.1 s"}) == []


@pytest.mark.slow
@pytest.mark.parametrize("command", ["sample", "complete", "eval --text", "classify"])
def test_using_a_model_imports_no_training_code(command, tmp_path):
    args, _ = COMMANDS[command]
    assert loaded(imported(args, tmp_path), TRAINING) == []
