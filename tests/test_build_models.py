"""The bundled models' build plan (tools/build_models.py --plan): which `textgen train` stages run, in
what order, and where a build started part-way (--from-stage) takes its weights from. The tool runs as
its user runs it, in a process of its own: tests import nothing from tools/ or scripts/."""

import json
import subprocess
import sys
from pathlib import Path

TOOL = Path(__file__).resolve().parent.parent / "tools" / "build_models.py"


def plan(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TOOL), "--plan", *args], capture_output=True, text=True, timeout=60)


def planned(*args: str) -> dict:
    """The one model's plan: its stages and those skipped."""
    result = plan(*args)
    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.splitlines()
    return json.loads(line)


def value(stage: list[str], flag: str) -> str:
    return stage[stage.index(flag) + 1]


def test_a_whole_build_chains_each_stage_from_the_one_before():
    stages = planned("--only", "sentiment")["stages"]
    assert [value(stage, "--out") for stage in stages] == [
        "runs/bundled/sentiment", "runs/bundled/sentiment-rt2", "runs/bundled/sentiment-mixed",
        "runs/bundled/sentiment-ngrams"]
    assert [value(stage, "--init-from") for stage in stages[1:]] == [
        value(stage, "--out") for stage in stages[:-1]]
    assert planned("--only", "sentiment")["skipped"] == []


def test_from_a_later_stage_the_bundled_file_stands_in_for_the_runs_before_it():
    result = planned("--only", "sentiment", "--from-stage", "sentiment-ngrams")
    (stage,) = result["stages"]
    assert value(stage, "--init-from") == "textgen/pretrained/sentiment.pt"
    assert "--features" in stage
    # the card still says what trained the bundled file: the three stages skipped, in order
    assert [value(skipped, "--out") for skipped in result["skipped"]] == [
        "runs/bundled/sentiment", "runs/bundled/sentiment-rt2", "runs/bundled/sentiment-mixed"]
    assert value(result["skipped"][-1], "--init-from") == "runs/bundled/sentiment-rt2"


def test_from_the_first_stage_is_a_whole_build_with_its_resumed_stages():
    whole = planned("--only", "english")
    assert planned("--only", "english", "--from-stage", "english") == whole
    assert [stage[-1] == "--overwrite" for stage in whole["stages"]] == [True, False, True, True]
    assert "--resume" in whole["stages"][1]


def test_the_typeset_stage_starts_from_the_bundled_english():
    (stage,) = planned("--only", "english", "--from-stage", "english-typeset")["stages"]
    assert value(stage, "--init-from") == "textgen/pretrained/english.pt"
    assert value(stage, "--corpus") == "runs/bundled/data/english_typeset"


def test_an_unknown_stage_names_the_stages_there_are():
    result = plan("--only", "sentiment", "--from-stage", "sentiment-rt3")
    assert result.returncode == 2 and result.stdout == ""
    assert "sentiment, sentiment-rt2, sentiment-mixed, sentiment-ngrams" in result.stderr
