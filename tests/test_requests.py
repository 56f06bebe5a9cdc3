"""Requests and configs as specifications: every bounded field refuses the value just past its bound
and a non-finite number with one message, the same from a request, a flag and the Python API."""

from __future__ import annotations

import dataclasses
import math

import pytest

import textgen
from textgen.cli import grammar, main
from textgen.config import check_value, field_kind, flag_of
from textgen.errors import ConfigError
from textgen.requests import JOBS, NEVER_TYPED, TRAIN_CONFIGS, SampleRequest, TrainRequest

# what each command needs besides the bad value to get as far as building its request
NEEDS = {"complete": ["x"], "classify": [], "eval": ["--text", "x"], "inspect": ["--text", "x"], "plot": ["run"]}


def bounded_fields():
    """(command, owner, field name, a value past its bound) for every bounded field a flag sets."""
    owners = [("train", config) for group, config in TRAIN_CONFIGS.items()]
    owners += [(command, request) for command, request in JOBS.items() if command not in ("train", "models")]
    cases = []
    for command, owner in owners:
        excluded = {name for group, names in NEVER_TYPED.items() for name in names
                    if owner is TRAIN_CONFIGS[group]}
        for spec in dataclasses.fields(owner):
            meta, (base, _, _) = spec.metadata, field_kind(spec)
            if spec.name in excluded or base not in ("int", "float"):
                continue
            for key, step in (("low", -1), ("above", 0), ("high", 1), ("below", 0)):
                if meta.get(key) is not None:
                    # a float past its bound by 0.5, or by the bound itself where 0.5 is lost in rounding (1e30)
                    bad = meta[key] + step if base == "int" else meta[key] + step * max(0.5, abs(meta[key]))
                    cases.append(pytest.param(command, owner, spec.name, bad, id=f"{command}-{spec.name}-{key}"))
    return cases


def refusal(make) -> str:
    with pytest.raises(ConfigError) as error:
        make()
    return str(error.value)


@pytest.mark.parametrize("command, owner, name, bad", bounded_fields())
def test_a_value_past_a_bound_gets_one_message_from_the_field_and_the_flag(command, owner, name, bad, capsys):
    many = field_kind({spec.name: spec for spec in dataclasses.fields(owner)}[name])[2]
    message = refusal(lambda: check_value(owner, name, (bad,) if many else bad))
    assert message.startswith(f"{flag_of(owner, name)} must be ") and message.endswith(f"got {bad}")
    argv = [command, *NEEDS.get(command, []), f"{flag_of(owner, name)}={bad}"]
    assert main(argv) == 1
    assert capsys.readouterr().err.strip() == f"textgen: error: {message}"


@pytest.mark.parametrize("command, owner, name, bad", [case for case in bounded_fields() if case.values[0] == "train"])
def test_train_refuses_in_python_what_the_flag_refuses(command, owner, name, bad, tmp_path):
    assert refusal(lambda: textgen.train(**{name: bad}, out=tmp_path / "run")) == refusal(
        lambda: check_value(owner, name, bad))
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_a_non_finite_number_is_refused_the_same_three_ways(value, capsys):
    expected = f"--lr must be a finite number, got {value}"
    assert refusal(lambda: textgen.train(lr=value)) == expected
    assert refusal(lambda: TrainRequest({"lr": value})) == expected
    assert main(["train", f"--lr={value}"]) == 1
    assert capsys.readouterr().err.strip() == f"textgen: error: {expected}"
    assert refusal(lambda: SampleRequest(temperature=value)) == f"--temperature must be a finite number, got {value}"


@pytest.mark.parametrize("settings, message", [
    (dict(length=10.5), "--length must be a whole number, got 10.5"),
    (dict(length=True), "--length must be a whole number, got True"),
    (dict(top_p="0.5"), "--top-p must be a number, got '0.5'"),
    (dict(seed=2**70), f"--seed must be a whole number from 0 to 4,294,967,295, got {2**70}"),
    (dict(stop=5), "--stop takes a list of items (a text each), got 5"),
    (dict(device="gpu"), "--device 'gpu' is not one of: auto, cpu, cuda, mps"),
])
def test_a_wrong_type_from_python_is_a_one_line_config_error(settings, message):
    assert refusal(lambda: SampleRequest(**settings)) == message


def test_one_stop_text_from_python_is_one_stop_not_its_characters():
    assert SampleRequest(stop="\n\n").stop == ("\n\n",)


def test_every_job_has_a_command_whose_flags_are_its_fields():
    parsers = {name: parser for action in grammar.build_parser()._actions
               if hasattr(action, "choices") and isinstance(action.choices, dict)
               for name, parser in action.choices.items()}
    assert set(parsers) == set(JOBS)
    for command, request in JOBS.items():
        if request is TrainRequest:
            continue
        dests = {action.dest for action in parsers[command]._actions}
        assert {spec.name for spec in dataclasses.fields(request)} <= dests, command


@pytest.mark.parametrize("argv, request_type, fields", [
    (["sample", "--prompt", "ROMEO:", "--stop", "a", "--stop", "b", "--seed", "3"], SampleRequest,
     dict(prompt="ROMEO:", stop=("a", "b"), seed=3)),
    (["memory", "--tasks", "adding", "recall", "--lags", "10", "30"], JOBS["memory"],
     dict(tasks=("adding", "recall"), lags=(10, 30))),
    (["train", "--lr", "0.1", "--no-tie-weights"], TrainRequest, dict(settings={"lr": 0.1, "tie_weights": False})),
])
def test_the_parser_builds_the_request_a_caller_would(argv, request_type, fields):
    request = grammar.request_of(grammar.build_parser().parse_args(argv))
    assert isinstance(request, request_type)
    for name, value in fields.items():
        assert getattr(request, name) == value
