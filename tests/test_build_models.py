"""The bundled models' build plan (scripts/build_models.py): which `textgen train` stages run, in what
order, and where a build started part-way (--from-stage) takes its weights from."""

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "build_models.py"


@pytest.fixture(scope="module")
def build_models():
    spec = importlib.util.spec_from_file_location("build_models", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def value(stage: list[str], flag: str) -> str:
    return stage[stage.index(flag) + 1]


def test_a_whole_build_chains_each_stage_from_the_one_before(build_models):
    stages, intro = build_models.plan_stages("sentiment", build_models.MODELS["sentiment"])
    assert [value(stage, "--out") for stage in stages] == [
        "runs/bundled/sentiment", "runs/bundled/sentiment-rt2", "runs/bundled/sentiment-mixed",
        "runs/bundled/sentiment-ngrams"]
    assert [value(stage, "--init-from") for stage in stages[1:]] == [
        value(stage, "--out") for stage in stages[:-1]]
    assert intro == ""


def test_from_a_later_stage_the_bundled_file_stands_in_for_the_runs_before_it(build_models):
    spec = build_models.MODELS["sentiment"]
    stages, intro = build_models.plan_stages("sentiment", spec, "sentiment-ngrams")
    assert len(stages) == 1
    assert value(stages[0], "--init-from") == "textgen/pretrained/sentiment.pt"
    assert "--features" in stages[0]
    # the card still says what trained the bundled file: the three stages skipped, in order
    skipped = [line for line in intro.splitlines() if line.startswith("    textgen train")]
    assert [value(line.split(), "--out") for line in skipped] == [
        "runs/bundled/sentiment", "runs/bundled/sentiment-rt2", "runs/bundled/sentiment-mixed"]
    # planning never edits the model's own commands
    assert value(spec["train"], "--init-from") == "runs/bundled/sentiment-mixed"


def test_from_the_first_stage_is_a_whole_build_with_its_resumed_stages(build_models):
    spec = build_models.MODELS["english"]
    whole = build_models.plan_stages("english", spec)
    assert build_models.plan_stages("english", spec, "english") == whole
    assert [stage[-1] == "--overwrite" for stage in whole[0]] == [True, False, True]
    assert "--resume" in whole[0][1]


def test_an_unknown_stage_names_the_stages_there_are(build_models):
    with pytest.raises(ValueError, match="sentiment, sentiment-rt2, sentiment-mixed, sentiment-ngrams"):
        build_models.plan_stages("sentiment", build_models.MODELS["sentiment"], "sentiment-rt3")
