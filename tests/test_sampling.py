import itertools
import json
import logging
import math

import pytest
import torch

from textgen.nn.checkpoint import save_checkpoint
from textgen.cli import main
from textgen.config import ModelConfig, SampleConfig, to_dict
from textgen.errors import ConfigError, TextgenError
from textgen.nn.model import LanguageModel
from textgen.generate.copying import longest_repeat
from textgen.generate.processors import (NEG_INF, MinP, NoRepeatNGram, RepeatGuard, RepetitionPenalty, Temperature,
                                         TopK, TopP, TypicalP, apply_processors, build_processors, extends_repeat)
from textgen.generate.sampling import Stepper, _Uniforms, beam_search, draw, generate, history_kept, start_token, stream
from textgen.generate.scoring import score
from textgen.data.tokenizer import CharTokenizer

TEXT = "the cat sat on the mat.\n"
NO_HISTORY = torch.zeros(1, 0, dtype=torch.long)


def tiny(tokenizer, cell="lstm", seed=0, **overrides):
    torch.manual_seed(seed)
    settings = dict(cell=cell, num_layers=2, hidden_size=16, embed_size=16, vocab_size=tokenizer.vocab_size,
                    dropout=0.0, output_dropout=0.0)
    return LanguageModel(ModelConfig(**{**settings, **overrides})).eval()


@pytest.fixture
def tokenizer():
    return CharTokenizer.from_texts([TEXT])


@pytest.fixture
def model(tokenizer):
    return tiny(tokenizer)


def kept(scores):
    return torch.isfinite(scores).nonzero()[:, -1].tolist()


# --- processors, each alone -------------------------------------------------------------------

def test_temperature_divides_the_scores():
    scores = torch.tensor([[2.0, -1.0, 0.5]])
    torch.testing.assert_close(Temperature(0.5)(NO_HISTORY, scores), torch.tensor([[4.0, -2.0, 1.0]]))


def test_top_k_keeps_exactly_the_k_highest_scores_even_with_ties():
    scores = torch.tensor([[1.0, 5.0, 3.0, 3.0, 3.0, -2.0]])
    out = TopK(3)(NO_HISTORY, scores)
    assert len(kept(out)) == 3 and 1 in kept(out)
    assert torch.equal(out[torch.isfinite(out)], scores[torch.isfinite(out)])
    assert torch.equal(TopK(10)(NO_HISTORY, scores), scores)


def test_top_p_keeps_the_smallest_set_of_likeliest_tokens_with_mass_at_least_p():
    scores = torch.tensor([[0.15, 0.5, 0.05, 0.3]]).log()
    assert kept(TopP(0.5)(NO_HISTORY, scores)) == [1]
    assert kept(TopP(0.79)(NO_HISTORY, scores)) == [1, 3]
    assert kept(TopP(0.81)(NO_HISTORY, scores)) == [0, 1, 3]
    assert kept(TopP(0.01)(NO_HISTORY, scores)) == [1]


def test_min_p_drops_tokens_below_the_fraction_of_the_likeliest():
    scores = torch.tensor([[0.4, 0.3, 0.19, 0.11]]).log()
    assert kept(MinP(0.5)(NO_HISTORY, scores)) == [0, 1]
    assert kept(MinP(0.25)(NO_HISTORY, scores)) == [0, 1, 2, 3]


def test_typical_p_keeps_tokens_whose_surprise_is_closest_to_the_entropy():
    probs = torch.tensor([0.4, 0.22, 0.2, 0.18])
    entropy = -(probs * probs.log()).sum()
    # the likeliest token is the least typical: its surprise is furthest from the entropy
    assert (-probs.log() - entropy).abs().argsort().tolist() == [1, 2, 3, 0]
    assert kept(TypicalP(0.4)(NO_HISTORY, probs.log()[None])) == [1, 2]
    assert kept(TypicalP(0.5)(NO_HISTORY, probs.log()[None])) == [1, 2, 3]


def test_repetition_penalty_divides_positive_and_multiplies_negative_scores_of_window_tokens_only():
    scores = torch.tensor([[2.0, -2.0, 2.0, -2.0, 1.0]])
    history = torch.tensor([[2, 3, 0, 1, 1]])  # window 3 sees tokens 0 and 1 only
    out = RepetitionPenalty(2.0, window=3)(history, scores)
    torch.testing.assert_close(out, torch.tensor([[1.0, -4.0, 2.0, -2.0, 1.0]]))


def test_no_repeat_ngram_bans_exactly_the_tokens_that_would_repeat_an_ngram():
    history = torch.tensor([[1, 2, 3, 1, 2, 4, 1, 2]])  # 1 2 was followed by 3 and by 4
    out = NoRepeatNGram(3)(history, torch.zeros(1, 6))
    assert kept(out) == [0, 1, 2, 5]
    assert kept(NoRepeatNGram(1)(history, torch.zeros(1, 6))) == [0, 5]
    assert kept(NoRepeatNGram(9)(history, torch.zeros(1, 6))) == [0, 1, 2, 3, 4, 5]


def test_processors_work_row_by_row_on_a_batch():
    history = torch.tensor([[1, 2, 1], [3, 3, 3]])
    out = NoRepeatNGram(2)(history, torch.zeros(2, 4))
    assert torch.isinf(out).tolist() == [[False, False, True, False], [False, False, False, True]]


def test_build_processors_makes_one_processor_per_control_set_and_the_default_temperature_and_repeat_guard():
    assert build_processors(SampleConfig()) == [Temperature(SampleConfig().temperature), RepeatGuard(0.2)]
    assert build_processors(SampleConfig(temperature=1.0, repeat_guard=0)) == []
    config = SampleConfig(temperature=0.7, top_k=5, top_p=0.9, min_p=0.1, typical_p=0.95,
                          repetition_penalty=1.3, repetition_window=16, no_repeat_ngram=4, repeat_guard=0.3)
    assert build_processors(config) == [RepetitionPenalty(1.3, 16), NoRepeatNGram(4), Temperature(0.7),
                                        RepeatGuard(0.3), TopK(5), TopP(0.9), MinP(0.1), TypicalP(0.95)]
    # greedy decoding and beam search take the likeliest texts, which a cap on sampling cannot change
    assert build_processors(SampleConfig(temperature=0)) == []
    assert build_processors(SampleConfig(beams=2)) == []  # the default temperature too


def extends_repeat_by_brute_force(history, token, span, window):
    extended = history + [token]
    ends = range(max(0, len(history) - window), len(history))  # where an earlier copy may end
    return len(extended) >= span and any(end - span + 1 >= 0 and extended[end - span + 1:end + 1] == extended[-span:]
                                         for end in ends)


def test_a_token_extends_a_repeat_where_it_and_the_tokens_before_it_stood_already():
    generator = torch.Generator().manual_seed(0)
    draw_int = lambda low, high: int(torch.randint(low, high, (1,), generator=generator))  # noqa: E731
    for _ in range(500):
        histories = torch.randint(0, 3, (2, draw_int(0, 30)), generator=generator)
        tokens, span, window = torch.randint(0, 3, (2,), generator=generator), draw_int(2, 8), draw_int(1, 25)
        expected = [extends_repeat_by_brute_force(history.tolist(), int(token), span, window)
                    for history, token in zip(histories, tokens)]
        assert extends_repeat(histories, tokens, span, window).tolist() == expected


def test_the_repeat_guard_caps_only_a_likely_token_that_would_extend_a_long_repeat():
    line = list(range(1, 31))  # 30 distinct tokens, written once and then begun again
    history = torch.tensor([line + [0] + line[:25]])
    scores = torch.full((1, 40), -5.0)
    scores[0, 26] = 5.0  # the repeat's next token, far the likeliest
    probs = RepeatGuard(0.2)(history, scores).softmax(-1)
    assert probs[0, 26].item() == pytest.approx(0.8)
    others = scores.softmax(-1)[0].index_fill(0, torch.tensor([26]), 0)
    torch.testing.assert_close(probs[0].index_fill(0, torch.tensor([26]), 0), others / others.sum() * 0.2)
    # a repeat of 20 tokens is shorter than the guard's 24: left alone, as is a token already under the cap
    assert torch.equal(RepeatGuard(0.2)(history[:, 5:], scores), scores)
    batch = RepeatGuard(0.2)(torch.cat([history, history.roll(1)]), scores.repeat(2, 1))  # row by row
    assert torch.equal(batch[0], RepeatGuard(0.2)(history, scores)[0]) and torch.equal(batch[1], scores[0])
    scores[0, 26] = -1.0  # 58%
    assert torch.equal(RepeatGuard(0.2)(history, scores), scores)


def test_with_the_repeat_guard_a_model_that_loves_to_loop_writes_no_long_repeat():
    def loop_lover(history):  # the token of 5 steps back, at 99.9%: a five-token loop, forever
        scores = torch.zeros(1, 8)
        scores[0, history[0, -5]] = 9.0
        return scores

    generator_seed = 0
    for guard, most in ((0.0, 1900), (0.2, 49)):
        processors = [Temperature(0.5), *([RepeatGuard(guard)] if guard else [])]
        history = torch.tensor([[1, 2, 3, 4, 5]])
        uniforms = _Uniforms(generator_seed, 1, torch.device("cpu"))
        for _ in range(2000):
            token = draw(apply_processors(processors, history, loop_lover(history)), uniforms.next())
            history = torch.cat([history, token[:, None]], 1)
        repeat = longest_repeat("".join(map(str, history[0].tolist())))[0]
        assert (repeat > most) if not guard else (repeat <= most)


def test_the_sampler_keeps_the_history_the_repeat_guard_reads():
    assert history_kept(SampleConfig()) >= RepeatGuard(0.2).window + RepeatGuard(0.2).span
    assert history_kept(SampleConfig(repeat_guard=0)) == 64
    assert history_kept(SampleConfig(no_repeat_ngram=3)) is None


# --- config ------------------------------------------------------------------------------------

@pytest.mark.parametrize("options, message", [
    (dict(top_p=0.0), "--top-p must be in (0, 1], got 0.0"),
    (dict(typical_p=1.5), "--typical-p must be in (0, 1], got 1.5"),
    (dict(min_p=1.0), "--min-p must be in [0, 1), got 1.0"),
    (dict(top_k=0), "--top-k must be a whole number from 1 to 1,048,576, got 0"),
    (dict(length=0), "--length must be a whole number from 1 to 10,000,000, got 0"),
    (dict(beams=3, num_samples=2), "--beams 3 returns the single most likely text, so it cannot make "
                                   "--num-samples 2; choose one"),
    (dict(beams=3, top_k=5, temperature=0.5), "--beams searches for the most likely text and takes no "
                                              "sampling controls; drop --temperature, --top-k or drop --beams"),
    (dict(temperature=0, top_p=0.9), "--temperature 0 means greedy decoding, which --top-p cannot change; "
                                     "drop those flags or use a temperature above 0"),
    (dict(temperature=0, num_samples=4), "--temperature 0 means greedy decoding, so --num-samples 4 would "
                                         "give identical texts; use a temperature above 0"),
    (dict(stop=("",)), "--stop '' would stop before the first character; give a non-empty text"),
    (dict(repeat_guard=-0.1), "--repeat-guard must be in [0, 0.5], got -0.1"),
    (dict(repeat_guard=0.6), "--repeat-guard must be in [0, 0.5], got 0.6"),
])
def test_invalid_or_contradictory_options_give_one_clear_error(options, message):
    with pytest.raises(ConfigError) as error:
        SampleConfig(**options)
    assert str(error.value) == message


# --- the generation loop -----------------------------------------------------------------------

@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")
@pytest.mark.parametrize("cell, embed_size", [("lstm", 16), ("lstm", 8), ("gru", 16)])
def test_stepwise_logits_equal_one_forward_pass_over_the_same_ids(tokenizer, cell, embed_size):
    model = tiny(tokenizer, cell, embed_size=embed_size, tie_weights=embed_size == 16 or cell == "lstm")
    ids = torch.randint(0, tokenizer.vocab_size, (3, 40), generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        whole, _ = model(ids)
        logits, state = model(ids[:, :1])
        steps, stepper = [logits[:, 0]], Stepper(model)
        for position in range(1, ids.size(1)):
            logits, state = stepper(ids[:, position], state)
            steps.append(logits)
    torch.testing.assert_close(torch.stack(steps, 1), whole, atol=1e-5, rtol=0)



@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")
@pytest.mark.parametrize("cell, embed_size", [("lstm", 16), ("lstm", 8), ("gru", 16)])
def test_int8_steps_give_nearly_the_full_precision_distribution(tokenizer, cell, embed_size):
    model = tiny(tokenizer, cell, embed_size=embed_size, hidden_size=64)
    tokens = torch.randint(0, tokenizer.vocab_size, (20, 4), generator=torch.Generator().manual_seed(2))
    exact, int8 = Stepper(model), Stepper(model, int8=True)
    with torch.inference_mode():
        _, state = model(tokens[:1].t())
        exact_state = int8_state = state
        for position in range(1, len(tokens)):
            exact_logits, exact_state = exact(tokens[position], exact_state)
            int8_logits, int8_state = int8(tokens[position], int8_state)
    exact_probs, int8_probs = exact_logits.softmax(-1), int8_logits.softmax(-1)
    assert not torch.equal(exact_logits, int8_logits)  # the 8-bit kernels really ran
    assert (exact_probs - int8_probs).abs().sum(-1).max() < 0.05  # total variation under 2.5%


def test_int8_sampling_runs_through_the_cli_options(model, tokenizer):
    config = SampleConfig(length=40, num_samples=3, seed=5, quantize="int8")
    samples = generate(model, tokenizer, "the", config)
    assert [len(s.text) for s in samples] == [40] * 3 and generate(model, tokenizer, "the", config) == samples
    with pytest.raises(ConfigError, match="--quantize"):
        SampleConfig(quantize="int4")

def greedy_by_hand(model, tokenizer, prompt, length):
    ids = [start_token(tokenizer), *tokenizer.encode(prompt).tolist()]
    for _ in range(length):
        logits, _ = model(torch.tensor([ids]))
        logits[0, -1, [tokenizer.pad_id, tokenizer.unk_id]] = -math.inf
        ids.append(int(logits[0, -1].argmax()))
    return tokenizer.decode(ids[-length:])


def test_greedy_decoding_takes_the_likeliest_token_at_every_step(model, tokenizer):
    [sample] = generate(model, tokenizer, "the ", SampleConfig(temperature=0, length=30))
    assert sample.text == greedy_by_hand(model, tokenizer, "the ", 30)
    assert generate(model, tokenizer, "the ", SampleConfig(temperature=-1, length=30)) == [sample]


def test_the_prompt_is_read_in_one_forward_call_and_each_step_is_one_call_for_all_samples(
        model, tokenizer, monkeypatch):
    forward_calls, step_batches = [], []
    model.register_forward_hook(lambda module, inputs, output: forward_calls.append(inputs[0].shape))
    original = Stepper.__call__
    monkeypatch.setattr(Stepper, "__call__", lambda self, tokens, state, labels=None: (
        step_batches.append(len(tokens)), original(self, tokens, state, labels))[1])
    generate(model, tokenizer, "the cat", SampleConfig(length=20, num_samples=5, seed=0))
    assert forward_calls == [torch.Size([1, 8])]  # the priming newline and the 7 prompt characters
    assert step_batches == [5] * 19


def test_the_same_seed_gives_the_same_samples_and_another_seed_other_samples(model, tokenizer):
    config = SampleConfig(length=60, num_samples=3, seed=7)
    first = generate(model, tokenizer, "the", config)
    assert generate(model, tokenizer, "the", config) == first
    assert len({sample.text for sample in first}) == 3
    assert generate(model, tokenizer, "the", SampleConfig(length=60, num_samples=3, seed=8)) != first


def test_sample_i_of_a_batch_is_the_text_of_a_single_run_with_seed_plus_i(model, tokenizer):
    config = SampleConfig(length=50, num_samples=4, seed=100, top_k=6, stop=("at",))
    batch = generate(model, tokenizer, "a", config)
    for index, sample in enumerate(batch):
        [alone] = generate(model, tokenizer, "a", SampleConfig(length=50, seed=100 + index, top_k=6, stop=("at",)))
        assert alone.text == sample.text and alone.stop_reason == sample.stop_reason
        assert alone.mean_log_prob == pytest.approx(sample.mean_log_prob, abs=1e-5)


def test_length_is_counted_in_characters(model, tokenizer):
    samples = generate(model, tokenizer, "", SampleConfig(length=37, num_samples=3, seed=0))
    assert [len(s.text) for s in samples] == [37] * 3 and {s.stop_reason for s in samples} == {"length"}


def test_a_stop_string_cuts_the_text_and_never_reaches_the_stream(model, tokenizer):
    config = SampleConfig(length=400, num_samples=6, seed=3, stop=("t", "\n"))
    chunks = list(stream(model, tokenizer, "", config))
    samples = {c.index: c.sample for c in chunks if c.sample}
    assert sorted(samples) == list(range(6))
    for index, sample in samples.items():
        assert sample.stop_reason == "stop_string" and "t" not in sample.text and "\n" not in sample.text
        assert "".join(c.text for c in chunks if c.index == index) == sample.text


def test_a_stop_string_spanning_several_tokens_is_held_back_until_decided(model, tokenizer):
    [free] = generate(model, tokenizer, "", SampleConfig(length=300, seed=5))
    stop = free.text[100:103]
    first = free.text.index(stop)
    chunks = list(stream(model, tokenizer, "", SampleConfig(length=300, seed=5, stop=(stop,))))
    assert "".join(c.text for c in chunks) == free.text[:first] == chunks[-1].sample.text


def test_mean_log_prob_is_that_of_the_generated_tokens_under_the_model(model, tokenizer):
    [sample] = generate(model, tokenizer, "the ", SampleConfig(length=25, seed=2, top_k=3, temperature=0.5))
    after = score(model, tokenizer, "the " + sample.text)["log_prob"]
    before = score(model, tokenizer, "the ")["log_prob"]
    assert sample.mean_log_prob == pytest.approx((after - before) / 25, abs=1e-5)


def test_an_empty_prompt_starts_from_the_zero_state_primed_with_a_newline(model, tokenizer):
    assert tokenizer.decode([start_token(tokenizer)]) == "\n"
    [sample] = generate(model, tokenizer, "", SampleConfig(temperature=0, length=10))
    [from_newline] = generate(model, tokenizer, "\n", SampleConfig(temperature=0, length=10))
    assert sample.text != from_newline.text  # the priming newline is not a prompt newline
    assert sample.text == greedy_by_hand(model, tokenizer, "", 10)


def test_without_a_newline_in_the_vocabulary_priming_uses_the_padding_id():
    assert start_token(CharTokenizer.from_texts(["abc"])) == 0


def test_prompt_characters_outside_the_vocabulary_warn_with_the_count_and_generation_goes_on(
        model, tokenizer, caplog):
    with caplog.at_level(logging.WARNING):
        [sample] = generate(model, tokenizer, "the dog!", SampleConfig(length=10, seed=0))
    assert "3 prompt character(s) are not in the model's vocabulary" in caplog.text
    assert len(sample.text) == 10


def test_padding_and_unknown_tokens_are_never_generated(tokenizer):
    model = tiny(tokenizer)
    with torch.no_grad():
        model.output.bias[[tokenizer.pad_id, tokenizer.unk_id]] = 50.0
    [sample] = generate(model, tokenizer, "", SampleConfig(length=40, seed=0))
    assert len(sample.text) == 40 and "\ufffd" not in sample.text


def test_subword_samples_stream_whole_text_up_to_the_length_in_characters():
    from textgen.data.tokenizer import SentencePieceTokenizer
    tokenizer = SentencePieceTokenizer.train(["the cat sat on the mat, the café was naïve.\n" * 40], 278)
    model = tiny(tokenizer)
    chunks = list(stream(model, tokenizer, "the café", SampleConfig(length=60, num_samples=3, seed=0)))
    for index in range(3):
        [sample] = [c.sample for c in chunks if c.index == index and c.sample]
        assert "".join(c.text for c in chunks if c.index == index) == sample.text
        assert sample.stop_reason == "length" and len(sample.text) == 60


# --- beam search ---------------------------------------------------------------------------------

def exhaustive_best(model, tokenizer, length, stop, alpha):
    """The best continuation of the empty prompt over every text of up to `length` characters."""
    start, best = start_token(tokenizer), None
    letters = [i for i in range(tokenizer.vocab_size) if i not in (tokenizer.pad_id, tokenizer.unk_id)]
    for ids in itertools.product(letters, repeat=length):
        text = tokenizer.decode(ids)
        used = len(ids) if stop not in text else text.index(stop) + len(stop)
        logits, _ = model(torch.tensor([[start, *ids[:used - 1]]]))
        log_prob = logits[0].log_softmax(-1).gather(-1, torch.tensor(ids[:used])[:, None]).sum().item()
        candidate = (log_prob / used ** alpha, text[:used].replace(stop, "") if stop in text else text)
        best = candidate if best is None or candidate[0] > best[0] else best
    return best[1]


@pytest.mark.parametrize("alpha", [0.0, 1.0, -0.5])
def test_beam_search_with_enough_beams_finds_the_best_text_of_exhaustive_search(alpha):
    tokenizer = CharTokenizer.from_texts(["ab\n"])  # three letters after padding and unknown
    for seed in range(3):
        model = tiny(tokenizer, seed=seed, hidden_size=8, embed_size=8)
        config = SampleConfig(length=4, beams=27, stop=("\n",), length_penalty=alpha)
        with torch.no_grad():
            expected = exhaustive_best(model, tokenizer, 4, "\n", alpha)
        assert beam_search(model, tokenizer, "", config).text == expected


def test_one_beam_is_greedy_decoding(model, tokenizer):
    sample = beam_search(model, tokenizer, "the", SampleConfig(length=20, beams=1))
    assert sample.text == greedy_by_hand(model, tokenizer, "the", 20)


def test_beam_search_reports_the_model_mean_log_prob_and_stop_reason(model, tokenizer):
    [sample] = generate(model, tokenizer, "", SampleConfig(length=12, beams=4))
    assert sample.stop_reason == "length" and len(sample.text) == 12
    assert sample.mean_log_prob == pytest.approx(score(model, tokenizer, sample.text)["log_prob"] / 12, abs=1e-5)


# --- scoring -----------------------------------------------------------------------------------

def test_score_is_the_log_probability_of_each_character_given_the_ones_before(model, tokenizer):
    text = "a cat"
    ids = [start_token(tokenizer), *tokenizer.encode(text).tolist()]
    expected = 0.0
    for position in range(1, len(ids)):
        logits, _ = model(torch.tensor([ids[:position]]))
        expected += logits[0, -1].log_softmax(-1)[ids[position]].item()
    result = score(model, tokenizer, text)
    assert result["log_prob"] == pytest.approx(expected, abs=1e-4)
    assert result["bits_per_char"] == pytest.approx(-expected / math.log(2) / 5, abs=1e-4)
    assert (result["tokens"], result["chars"]) == (5, 5)


def test_scoring_an_empty_text_is_an_error(model, tokenizer):
    with pytest.raises(TextgenError, match="the text to score is empty"):
        score(model, tokenizer, "")


# --- the command line --------------------------------------------------------------------------

@pytest.fixture
def checkpoint(tmp_path, model, tokenizer):
    path = tmp_path / "model.pt"
    save_checkpoint(path, {"kind": "language_model", "model_config": to_dict(model.config),
                           "tokenizer": tokenizer.to_data(), "model": model.state_dict()})
    return str(path)


def test_sample_prints_the_prompt_and_its_continuation(checkpoint, model, tokenizer, capsys):
    assert main(["sample", "--model", checkpoint, "--prompt", "the ", "--length", "30", "--temperature", "0",
                 "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "the " + greedy_by_hand(model, tokenizer, "the ", 30) + "\n"
    assert "greedy decoding" in captured.err


def test_sample_json_prints_one_object_per_sample(checkpoint, capsys):
    assert main(["sample", "--model", checkpoint, "--length", "20", "--num-samples", "3", "--seed", "1",
                 "--stop", "t", "--stop", "m", "--json", "--device", "cpu"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 3 and all(set(line) == {"text", "mean_log_prob", "stop_reason"} for line in lines)
    assert all(line["stop_reason"] in ("length", "stop_string") and "t" not in line["text"] for line in lines)


def test_sample_with_a_prompt_file(checkpoint, tmp_path, capsys):
    (tmp_path / "prompt.txt").write_text("the mat")
    assert main(["sample", "--model", checkpoint, "--prompt-file", str(tmp_path / "prompt.txt"),
                 "--length", "5", "--seed", "0", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("the mat") and len(out) == len("the mat") + 5 + 1


def test_interactive_sampling_continues_each_prompt_until_quit(checkpoint, model, tokenizer, capsys, monkeypatch):
    import io
    monkeypatch.setattr("sys.stdin", io.StringIO("the \na cat\nquit\nnever read\n"))
    assert main(["sample", "--model", checkpoint, "--interactive", "--length", "8", "--temperature", "0",
                 "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    assert captured.out == (greedy_by_hand(model, tokenizer, "the ", 8) + "\n"
                            + greedy_by_hand(model, tokenizer, "a cat", 8) + "\n")
    assert captured.err.count("prompt> ") == 3


@pytest.mark.parametrize("flags, message", [
    (["--prompt", "a", "--prompt-file", "p.txt"], "--prompt and --prompt-file both give a prompt; choose one"),
    (["--beams", "2", "--top-p", "0.9"], "--beams searches for the most likely text and takes no sampling "
                                         "controls; drop --top-p or drop --beams"),
    (["--repeat-guard", "-1"], "--repeat-guard must be in [0, 0.5], got -1.0"),
    (["--repeat-guard", "nan"], "--repeat-guard must be a finite number, got nan"),
])
def test_sample_rejects_contradictory_options_with_one_error_line(checkpoint, capsys, flags, message):
    assert main(["sample", "--model", checkpoint, *flags]) == 1
    assert capsys.readouterr().err.strip() == f"textgen: error: {message}"


def test_sample_refuses_a_classifier_checkpoint(tmp_path, capsys):
    path = tmp_path / "classifier.pt"
    save_checkpoint(path, {"kind": "classifier", "model": {}})
    assert main(["sample", "--model", str(path), "--device", "cpu"]) == 1
    assert capsys.readouterr().err.strip() == (
        f"textgen: error: {path} holds a classifier, but this command needs a language model "
        f"(textgen train --task lm)")


def test_eval_text_prints_the_score(checkpoint, model, tokenizer, capsys):
    assert main(["eval", "--model", checkpoint, "--text", "the cat", "--json", "--device", "cpu"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result == pytest.approx(score(model, tokenizer, "the cat"))
    assert main(["eval", "--model", checkpoint, "--text", "the cat", "--device", "cpu"]) == 0
    assert capsys.readouterr().out.startswith(f"{result['bits_per_char']:.4f} bits per character")


def test_a_one_sample_generator_gives_the_same_numbers_as_floats_as_in_tensors():
    # the server draws a float from each stream's generator; a stream's text must not depend on it
    as_tensors, as_floats = _Uniforms(9, 1, torch.device("cpu"), block=16), _Uniforms(9, 1, torch.device("cpu"), block=16)
    expected = [as_tensors.next().item() for _ in range(40)]  # across two refills
    assert [as_floats.next_number() for _ in range(40)] == expected


def test_a_stop_typed_with_backslashes_on_the_command_line_means_the_newlines_it_shows(capsys):
    # issue 34: a shell passes --stop "\n\n" as backslash, n, backslash, n: it never stopped
    import textgen

    assert main(["sample", "--model", "shakespeare", "--prompt", "ROMEO:\n", "--length", "600", "--seed", "1",
                 "--stop", "\\n\\n", "--json"]) == 0
    typed = json.loads(capsys.readouterr().out.splitlines()[0])
    expected = textgen.load("shakespeare", device="cpu").generate("ROMEO:\n", length=600, seed=1, stop="\n\n")
    assert typed["text"] == expected and typed["stop_reason"] == "stop_string" and "\n\n" not in expected


@pytest.mark.parametrize("processor", [TopP(1e-50), TypicalP(1e-46)])
def test_a_vanishing_p_keeps_the_one_best_token_not_none(processor):
    # issue 34: 1e-50 is 0 in float32, every token was dropped and the last id written over and over
    scores = torch.randn(3, 40)
    kept = processor(None, scores) > NEG_INF
    assert kept.sum(-1).tolist() == [1, 1, 1]
    if isinstance(processor, TopP):
        assert kept.float().argmax(-1).tolist() == scores.argmax(-1).tolist()


def test_a_guidance_weight_that_would_overflow_is_refused(capsys):
    assert main(["sample", "--model", "reviews-label", "--label", "pos", "--guidance", "1e308"]) == 1
    assert "--guidance must be" in capsys.readouterr().err
