"""Issue 34: the Python API fuzzed as the command line is. Every call with a hostile value of any type
(None, bytes, a float for a whole number, nan, inf, huge, negative, empty, a generator, a wrong label)
either gives a correct result or raises a textgen error whose message is one line; never a builtin
exception from a deep frame."""

import collections
import dataclasses
import json
import math
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import textgen
from textgen.config import SampleConfig
from textgen.errors import TextgenError

# values no setting should crash on; the whole numbers stay small or far out of every bound, so a
# value that is valid is also quick
HOSTILE = st.one_of(
    st.sampled_from([None, True, False, -(2 ** 70), -1, 0, 1, 3, 2 ** 31, 2 ** 70, 0.5, -0.0, 1e-50, 1e308,
                     math.nan, math.inf, -math.inf, "", " ", "\udcff", "pos", "neg,pos", "word", "line", "cpu",
                     "gpu", b"bytes", [], [None], ["pos", "neg"], {}, (), object()]),
    st.text(max_size=12), st.floats(), st.builds(lambda: (x for x in "ab")))
SETTINGS = [spec.name for spec in dataclasses.fields(SampleConfig)]
# TEXTGEN_API_FUZZ_EXAMPLES=400 is the long profile; TEXTGEN_API_FUZZ_REPORT=FILE writes its counts as JSON
EXAMPLES = int(os.environ.get("TEXTGEN_API_FUZZ_EXAMPLES", "80"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
COUNTS: collections.Counter = collections.Counter()  # (call, "answered" or "refused") -> cases


@pytest.fixture(scope="module")
def models():
    yield {name: textgen.load(name, device="cpu") for name in ("shakespeare", "reviews-label", "sentiment")}
    if report := os.environ.get("TEXTGEN_API_FUZZ_REPORT"):  # once every case has run
        table = collections.defaultdict(dict)
        for (call, outcome), cases in sorted(COUNTS.items()):
            table[call][outcome] = cases
        Path(report).write_text(json.dumps({"examples": EXAMPLES, "cases": table}, indent=2))


def answers_or_refuses(call, name: str):
    """The call's result, or None where it raised a one-line textgen error (anything else fails the test)."""
    try:
        result = call()
    except TextgenError as error:
        assert str(error) and "\n" not in str(error), repr(str(error))
        COUNTS[(name, "refused")] += 1
        return None
    COUNTS[(name, "answered")] += 1
    return result


@FUZZ
@given(name=st.sampled_from(SETTINGS), value=HOSTILE, model=st.sampled_from(["shakespeare", "reviews-label"]))
def test_generate_and_stream_with_any_value_of_any_setting(models, name, value, model):
    settings_given = {"length": 5, name: value}
    text = answers_or_refuses(lambda: models[model].generate("The ", **settings_given), "generate")
    assert text is None or isinstance(text, str)
    pieces = answers_or_refuses(lambda: list(models[model].stream("The ", **settings_given)), "stream")
    assert pieces is None or all(isinstance(piece, str) for piece in pieces)


@FUZZ
@given(prompt=HOSTILE)
def test_generate_score_and_complete_with_any_text(models, prompt):
    lm = models["shakespeare"]
    for call, name in ((lambda: lm.generate(prompt, length=3), "generate"), (lambda: lm.score(prompt), "score"),
                       (lambda: lm.complete(prompt, top=2), "complete")):
        answers_or_refuses(call, name)


@FUZZ
@given(top=HOSTILE, until=HOSTILE, label=HOSTILE)
def test_complete_with_any_options(models, top, until, label):
    found = answers_or_refuses(lambda: models["reviews-label"].complete("This film", top=top, until=until,
                                                                         label=label), "complete")
    assert found is None or (isinstance(found, list) and len(found) <= top)


@FUZZ
@given(texts=HOSTILE, batch_size=HOSTILE)
def test_classify_with_any_texts_and_batch_size(models, texts, batch_size):
    labelled = answers_or_refuses(lambda: models["sentiment"].classify(texts, batch_size=batch_size), "classify")
    assert labelled is None or all(prediction.label in ("neg", "pos") for prediction in labelled)


@FUZZ
@given(field=st.sampled_from(["model", "device", "kind", "max_len", "long_text", "features", "precision"]),
       value=HOSTILE)
def test_load_with_any_value_of_any_option(field, value):
    settings_given = {"model": "sentiment", field: value}
    loaded = answers_or_refuses(lambda: textgen.load(**settings_given), "load")
    assert loaded is None or hasattr(loaded, "path")


@FUZZ
@given(corpus=HOSTILE, split=HOSTILE, batch_size=HOSTILE, seq_len=HOSTILE)
def test_evaluate_with_any_arguments(models, corpus, split, batch_size, seq_len):
    answers_or_refuses(lambda: models["shakespeare"].evaluate(corpus, split=split, batch_size=batch_size,
                                                              seq_len=seq_len), "evaluate")


@pytest.mark.slow
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_train_with_any_value_of_any_setting_leaves_its_input_alone(corpus, tmp_path_factory, data):
    from textgen.requests import TRAIN_CONFIGS

    names = sorted({spec.name for config in TRAIN_CONFIGS.values() for spec in dataclasses.fields(config)}
                   - {"corpus", "out", "resume", "overwrite", "device", "max_steps", "time_budget"})
    name, value = data.draw(st.sampled_from(names)), data.draw(HOSTILE)
    before = corpus.read_bytes()
    work = tmp_path_factory.mktemp("run")
    settings_given = {"preset": "tiny", "max_steps": 1, "device": "cpu", "out": str(work / "run"), name: value}
    run = answers_or_refuses(lambda: textgen.train(corpus=str(corpus), **settings_given), "train")
    assert run is None or run.step >= 0
    assert corpus.read_bytes() == before
