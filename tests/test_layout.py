"""Data flows one way between textgen's packages: corpus -> tokenizer -> batches (data) -> model and
checkpoint (nn) -> training -> generation and classification -> the look-inside tools (lab) ->
workflows (recipes) -> the Python API, the server, the terminal and the command line. A package
imports only the packages this file allows it; config, errors, requests and metrics are free for all."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "textgen"
FREE = {"config", "errors", "requests", "metrics", "__init__"}
BUILDING_BLOCKS = {"data", "nn"}
# what each part may import besides FREE and itself; only the recipes import the trainer
ALLOWED = {
    "data": set(),
    "nn": {"data"},
    "training": BUILDING_BLOCKS,
    "generate": BUILDING_BLOCKS,
    "classify": BUILDING_BLOCKS,
    "lab": BUILDING_BLOCKS | {"generate", "classify"},
    "recipes": BUILDING_BLOCKS | {"training", "generate", "classify", "lab"},
    "api": {"recipes"},
    "serve": BUILDING_BLOCKS | {"generate", "classify", "lab", "recipes", "api"},
    # drawing on a terminal: results of the recipes, never a computation
    "terminal": {"generate", "classify", "lab", "recipes"},
    "cli": {"recipes", "terminal", "serve"},  # each command imports its recipe when it runs
}


def part_of(path: Path) -> str:
    relative = path.relative_to(PACKAGE)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def textgen_imports(path: Path) -> set[str]:
    """The parts of textgen (package or top-level module) that `path` imports."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("textgen"):
            parts = node.module.split(".")
            names.update([parts[1]] if len(parts) > 1 else [alias.name if (PACKAGE / alias.name).exists() or
                          (PACKAGE / f"{alias.name}.py").exists() else "__init__" for alias in node.names])
        elif isinstance(node, ast.Import):
            names.update(a.name.split(".")[1] for a in node.names if a.name.startswith("textgen."))
    return names


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if part_of(p) not in FREE | {"__main__", "corpora", "pretrained"})


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_module_imports_only_the_parts_its_package_may(path):
    part = part_of(path)
    allowed = FREE | ALLOWED[part] | {part}
    assert textgen_imports(path) <= allowed, f"{part} imports {textgen_imports(path) - allowed}"


def test_every_part_of_the_package_has_a_place():
    parts = {part_of(p) for p in PACKAGE.rglob("*.py")} - FREE - {"__main__", "corpora", "pretrained"}
    assert parts <= set(ALLOWED), parts - set(ALLOWED)


def test_free_modules_import_no_torch_and_no_other_part():
    for name in FREE - {"__init__"}:
        path = PACKAGE / f"{name}.py"
        if path.exists():
            assert "import torch" not in path.read_text(), name
            assert textgen_imports(path) <= FREE, (name, textgen_imports(path) - FREE)


def test_the_top_level_holds_only_the_free_modules_the_api_and_packages():
    top = {p.stem for p in PACKAGE.glob("*.py")}
    assert top <= FREE | {"api", "__main__"}, top - FREE - {"api", "__main__"}


def module_calls(argv: list[str]) -> set[tuple[str, str]]:
    """(caller, callee) for each call from one textgen module into another while `textgen ARGV` runs."""
    import sys

    from textgen.cli import main

    edges = set()

    def record(frame, event, arg):
        if event == "call" and frame.f_back is not None:
            callee, caller = frame.f_globals.get("__name__", ""), frame.f_back.f_globals.get("__name__", "")
            if callee != caller and callee.startswith("textgen.") and caller.startswith("textgen."):
                edges.add((caller, callee))

    sys.setprofile(record)
    try:
        assert main(argv) == 0
    finally:
        sys.setprofile(None)
    return edges


def a_cycle(edges: set[tuple[str, str]]) -> list[str]:
    """A path of modules that comes back to where it started, or [] when the calls form no loop."""
    following, done = {}, set()
    for caller, callee in edges:
        following.setdefault(caller, set()).add(callee)

    def walk(path: list[str]) -> list[str]:
        for callee in following.get(path[-1], ()):
            if callee in path:
                return path[path.index(callee):] + [callee]
            if callee not in done:
                found = walk(path + [callee])
                if found:
                    return found
        done.add(path[-1])
        return []

    return next((cycle for start in list(following) if (cycle := walk([start]))), [])


EXAMPLES = PACKAGE / "examples"


@pytest.mark.parametrize("argv", [
    ["sample", "--length", "20", "--seed", "0"],
    ["classify", "--eval", "--corpus", str(EXAMPLES / "my_labels.csv"), "--split", "train"],
    ["train", "--corpus", str(EXAMPLES / "my_text.txt"), "--preset", "tiny", "--max-steps", "2", "--device", "cpu"],
], ids=lambda argv: argv[0])
def test_a_command_enters_each_module_at_most_once_on_its_way(argv, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # train writes its run folder under runs/
    edges = module_calls(argv)
    assert len({module for edge in edges for module in edge}) > 5
    assert a_cycle(edges) == []


def test_a_loop_of_calls_between_modules_is_found():
    assert a_cycle({("a", "b"), ("b", "c")}) == []
    assert a_cycle({("a", "b"), ("b", "c"), ("c", "a")}) in (["a", "b", "c", "a"], ["b", "c", "a", "b"],
                                                             ["c", "a", "b", "c"])
