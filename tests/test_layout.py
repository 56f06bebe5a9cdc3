"""Data flows one way: a module imports only modules before it in ORDER (config and errors are
free for all), and only the recipes and the CLI import the trainer."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "textgen"
ORDER = ["corpus", "tokenizer", "ngrams", "batches", "model", "cells", "checkpoint", "processors", "stepper", "sampling",
         "completion", "copying", "precision", "classify", "distributed", "evaluation", "stacking", "tasks", "trainer",
         "inspection", "views", "memory", "recipes", "api", "plots",
         "arguments", "output", "cli"]
# what the command line may call: the workflows' entry modules and its own grammar and output
CLI_CALLS = {"recipes", "api", "evaluation", "sampling", "classify", "inspection", "views", "memory", "plots", "arguments",
             "output"}
FREE = {"config", "errors", "__init__"}


def textgen_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("textgen"):
            names.add(node.module.split(".")[1] if "." in node.module else "__init__")
        elif isinstance(node, ast.Import):
            names.update(a.name.split(".")[1] for a in node.names if a.name.startswith("textgen."))
    return names


@pytest.mark.parametrize("module", ORDER)
def test_module_imports_only_modules_to_its_left(module):
    path = PACKAGE / f"{module}.py"
    allowed = FREE | set(ORDER[: ORDER.index(module)])
    if module not in ("recipes", "cli"):
        allowed.discard("trainer")
    assert textgen_imports(path) <= allowed, f"{module} imports {textgen_imports(path) - allowed}"


def test_config_and_errors_import_no_torch():
    for name in ("config", "errors"):
        source = (PACKAGE / f"{name}.py").read_text()
        assert "import torch" not in source, name


def test_every_module_is_placed_in_the_order():
    modules = {p.stem for p in PACKAGE.glob("*.py")} - FREE - {"__main__"}
    assert modules == set(ORDER)


def test_the_cli_imports_only_entry_modules():
    imported = textgen_imports(PACKAGE / "cli.py")
    # inspect_command still reads its --find corpus itself
    assert imported <= CLI_CALLS | FREE | {"corpus"}, imported - CLI_CALLS - FREE
