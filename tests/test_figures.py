"""One figure per bundled model wherever it is shown, each with its unit.

A model card (textgen/pretrained/NAME.md, written by tools/build_models.py) gives the figures of the
weights as shipped on whole splits, and its checkpoint stores what the training run measured. Every
other place (`textgen models`, the README's and docs' tables of the bundled models) shows the card's
figures at its own rounding; the card agrees with its checkpoint where both state a figure. Figures
are read from the cards and checkpoints, never typed here: a model rebuilt with new figures only needs
its places updated. Help texts state real defaults; metrics.jsonl says the unit of its losses."""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path

import pytest

from textgen import cli
from textgen.nn.checkpoint import describe_checkpoint, load_checkpoint
from textgen.config import SampleConfig
from textgen.recipes.models import models
from textgen.requests import JOBS

ROOT = Path(__file__).resolve().parent.parent
PRETRAINED = ROOT / "textgen" / "pretrained"
NAMES = sorted(path.stem for path in PRETRAINED.glob("*.pt"))
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FIGURE = re.compile(r"(?<![\d.,])(\d+\.\d+)(%?)")


def card_tables(name: str) -> dict[str, list[list[str]]]:
    """Every table of a model's card by the heading above it, as rows of cells (header row first)."""
    tables, heading = {}, ""
    for line in (PRETRAINED / f"{name}.md").read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
        elif line.startswith("|") and not set(line) <= set("|-: "):
            tables.setdefault(heading, []).append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return tables


def headline(name: str) -> tuple[str, dict[str, float]]:
    """The unit and the shipped figure of each split in the card's Figures table."""
    (heading, rows), = [(h, rows) for h, rows in card_tables(name).items() if h.startswith("Figures (")]
    shipped = next(i for i, title in enumerate(rows[0]) if "shipped" in title)
    return heading.removeprefix("Figures (").removesuffix(")"), {row[0]: float(row[shipped]) for row in rows[1:]}


def every_card_figure() -> list[float]:
    """Every decimal figure in any table of any card: what a figure shown anywhere may be."""
    return [float(cell) for name in NAMES for rows in card_tables(name).values() for row in rows[1:]
            for cell in row if re.fullmatch(r"\d+\.\d+", cell)]


def shown_as(figure: float, shown: str, percent: bool) -> bool:
    """Whether `shown` (as written: "1.96", "83.8" with a % sign) is `figure` at that rounding."""
    decimals = len(shown.split(".")[1])
    value = figure * 100 if percent else figure
    return not (percent and figure > 1) and math.isclose(round(value, decimals), float(shown), abs_tol=1e-9)


def model_table_rows(page: Path) -> list[tuple[str, str, int]]:
    """(model name, figures cell, line) of each row of a table of the bundled models: a table whose rows
    each start with a bundled model's name in backticks and whose last column holds validation figures."""
    rows, table = [], []
    for number, line in enumerate([*page.read_text(encoding="utf-8").splitlines(), ""], 1):
        if line.startswith("|"):
            table.append(([cell.strip() for cell in line.strip().strip("|").split("|")], number))
            continue
        body = table[2:]
        if body and "validation" in table[0][0][-1] and all(cells[0].strip("`") in NAMES and
                                                           cells[0].startswith("`") for cells, _ in body):
            rows += [(cells[0].strip("`"), cells[-1], at) for cells, at in body]
        table = []
    return rows


def test_every_bundled_model_has_a_card_with_figures():
    assert len(NAMES) >= 5
    for name in NAMES:
        unit, figures = headline(name)
        assert unit in ("bits per character", "accuracy") and any(s.endswith(" validation") for s in figures), name


@pytest.mark.parametrize("name", NAMES)
def test_textgen_models_shows_the_card_validation_figures(name):
    unit, figures = headline(name)
    expected = [f"{value:.1%}" if unit == "accuracy" else f"{value:.3f}"
                for split, value in figures.items() if split.endswith(" validation")]
    shown = models()[name]["validation"]
    assert ["".join(match) for match in FIGURE.findall(shown)] == expected, shown
    assert ("accuracy" if unit == "accuracy" else "bits/char") in shown


def test_textgen_models_prints_them(capsys):
    assert cli.main(["models"]) == 0
    out = capsys.readouterr().out
    for name in NAMES:
        unit, figures = headline(name)
        first = next(iter(figures.values()))
        assert (f"{first:.1%}" if unit == "accuracy" else f"{first:.3f}") in out


@pytest.mark.parametrize("name", NAMES)
def test_the_card_gives_the_parameters_the_checkpoint_holds(name):
    parameters = dict(row[:2] for row in card_tables(name)[name])["parameters"]
    assert int(parameters.replace(",", "")) == describe_checkpoint(PRETRAINED / f"{name}.pt")["parameters"]


def test_a_stacked_classifier_s_card_gives_the_figures_its_checkpoint_stores():
    checked = 0
    for name in NAMES:
        rows = next((rows for heading, rows in card_tables(name).items() if heading.startswith("What stacking")), None)
        if rows is None:
            continue
        metrics = load_checkpoint(PRETRAINED / f"{name}.pt")["metrics"]
        assert rows[0] == ["features", "accuracy", "ECE at temperature 1", "temperature", "ECE after it"]
        for features, accuracy, ece_raw, temperature, ece in rows[1:]:
            for shown, key in ((accuracy, "accuracy"), (ece_raw, "ece_raw"), (temperature, "temperature"),
                               (ece, "ece")):
                assert shown_as(metrics[f"{features}_{key}"], shown, False), f"{name}: {features} {key} {shown}"
                checked += 1
    assert checked >= 12


def test_every_table_of_the_bundled_models_shows_the_card_figures():
    anywhere = every_card_figure()
    tables = 0
    for page in PAGES:
        rows = model_table_rows(page)
        tables += bool(rows)
        for name, cell, line in rows:
            where = f"{page.relative_to(ROOT)}:{line} ({name})"
            shown = FIGURE.findall(cell)
            assert shown, f"{where} shows no figure"
            # the first figure is the model's own validation figure, the card's first row
            first, percent = shown[0]
            assert shown_as(next(iter(headline(name)[1].values())), first, percent == "%"), \
                f"{where} shows {first}{percent}; its card says {headline(name)}"
            for value, percent in shown[1:]:
                assert any(shown_as(figure, value, percent == "%") for figure in anywhere), \
                    f"{where} shows {value}{percent}, which no card gives"
    assert tables >= 2  # the README's table and docs/models.md's


@pytest.mark.parametrize("command", sorted(JOBS))
def test_help_states_real_defaults(command, capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main([command, "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert not re.search(r"\bNone\b", out), f"textgen {command} --help says None: " + \
        next(line for line in out.splitlines() if re.search(r"\bNone\b", line))


def test_metrics_jsonl_says_the_unit_of_each_loss(corpus, tmp_path):
    run = tmp_path / "run"
    assert cli.main(["train", "--corpus", str(corpus), "--preset", "tiny", "--out", str(run), "--device", "cpu",
                     "--max-steps", "4", "--eval-interval", "2", "--log-interval", "1"]) == 0
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    training = [r for r in records if "loss" in r and "split" not in r]
    validation = [r for r in records if r.get("split") == "validation"]
    assert len(training) == 4 and len(validation) == 2
    for record in training:  # a character model: a token is a character
        assert record["loss_unit"] == "nats per token"
        assert record["bits_per_char"] == pytest.approx(record["loss"] / math.log(2))
    assert all(r["val_loss_unit"] == "nats per token" for r in validation)


def test_a_classifier_s_metrics_jsonl_says_its_loss_is_per_text(tmp_path):
    labelled = tmp_path / "labels.csv"
    with labelled.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["text", "label"])
        for i in range(40):
            writer.writerow([("a fine warm film" if i % 2 else "a dull cold film") + f" {i}", "pos" if i % 2 else "neg"])
    run = tmp_path / "run"
    assert cli.main(["train", "--task", "classify", "--corpus", str(labelled), "--preset", "tiny", "--out", str(run),
                     "--device", "cpu", "--max-steps", "2", "--eval-interval", "2", "--log-interval", "1"]) == 0
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert {r["loss_unit"] for r in records if "loss" in r and "split" not in r} == {"nats per text"}
    assert {r["val_loss_unit"] for r in records if r.get("split") == "validation"} == {"nats per text"}


def test_the_default_temperature_is_the_one_docs_sampling_md_measured():
    text = (ROOT / "docs" / "sampling.md").read_text(encoding="utf-8")
    section = text.split("## The default temperature", 1)[1].split("\n## ", 1)[0]
    stated = re.search(r"sample at\s+`--temperature ([\d.]+)` unless told otherwise", section)
    assert stated and float(stated.group(1)) == SampleConfig().temperature
    row = re.search(rf"^\| \*\*{stated.group(1)}\*\* ", section, re.M)
    assert row, "the table marks the default's row in bold"
