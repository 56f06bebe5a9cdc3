"""Configuration as data: one dataclass per concern, validated when built, saved in checkpoints.

Each field's `help` is its one-line documentation; `cli` builds its flags from these dataclasses.
This module imports no torch so that `--help` and validation stay instant.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
from dataclasses import dataclass, field
from typing import Any

from textgen.errors import ConfigError


def option(default: Any, help: str, flag: str | None = None, choices: tuple | None = None, *,
           low: float | None = None, high: float | None = None, above: float | None = None,
           below: float | None = None, positional: bool = False, path: bool = False) -> Any:
    """A dataclass field with its one-line help, its flag (default: --field-name), and the values it
    takes: `choices`, or bounds (`low`/`high` inclusive, `above`/`below` exclusive; for a tuple,
    each item's). `check_fields` enforces them and the command line's grammar is built from them,
    so a range is written once, here. `positional`: an argument, not a flag; `path`: it names a file or
    folder."""
    meta = {"help": help, "flag": flag, "choices": choices, "low": low, "high": high, "above": above,
            "below": below, "positional": positional, "path": path}
    return field(default=default, metadata=meta)


def flag_of(config_class: type, name: str) -> str:
    """The command-line flag that sets field `name` of `config_class`, e.g. `--seq-len`."""
    return _field_checks(config_class)[name][1]


@functools.cache
def _field_checks(config_class: type) -> dict[str, tuple[dataclasses.Field, str, tuple[str, bool, bool]]]:
    """Each field's spec, flag and kind, worked out once per class: the server checks a request's
    fields on every call."""
    return {spec.name: (spec, spec.metadata.get("flag") or "--" + spec.name.replace("_", "-"), field_kind(spec))
            for spec in dataclasses.fields(config_class)}


def field_kind(spec: dataclasses.Field) -> tuple[str, bool, bool]:
    """A field's item type (int, float, str, bool), whether it may be None, and whether it is a tuple."""
    text = str(spec.type).replace(" ", "")
    optional = text.endswith("|None")
    text = text.removesuffix("|None")
    if text.startswith("tuple["):
        return text[len("tuple["):].split(",")[0].rstrip("]"), optional, True
    return text, optional, False


_NOUNS = {"int": "a whole number", "float": "a number", "str": "a text", "bool": "true or false"}


def _bounds(base: str, meta: dict) -> str:
    """What a field's bounds allow, in words: 'a whole number from 1 to 64', 'in (0, 1]', 'above 0'."""
    low, high, above, below = (meta.get(key) for key in ("low", "high", "above", "below"))
    if base == "int":
        if low is not None and high is not None:
            return f"a whole number from {low:,} to {high:,}"
        return f"a whole number of at least {low:,}" if low is not None else f"a whole number of at most {high:,}"
    start = above if above is not None else low
    end = below if below is not None else high
    if start is not None and end is not None:
        return f"in {'(' if above is not None else '['}{start:g}, {end:g}{')' if below is not None else ']'}"
    if start is not None:
        return f"above {start:g}" if above is not None else f"{start:g} or more"
    return f"below {end:g}" if below is not None else f"at most {end:g}"


def _check_item(flag: str, base: str, meta: dict, value: Any) -> Any:
    if base == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{flag} must be true or false, got {value!r}")
        return value
    if base == "str":
        if not isinstance(value, str):
            raise ConfigError(f"{flag} must be a text, got {value!r}")
        _check_encodable(flag, value)
    elif isinstance(value, bool) or not isinstance(value, (int, float)) or (base == "int" and not isinstance(value, int)):
        raise ConfigError(f"{flag} must be {_NOUNS[base]}, got {value!r}")
    elif base == "float":
        value = float(value)
        if not math.isfinite(value):
            raise ConfigError(f"{flag} must be a finite number, got {value}")
    choices = meta.get("choices")
    if choices and value not in choices:
        raise ConfigError(f"{flag} {value!r} is not one of: {', '.join(map(str, choices))}")
    low, high, above, below = (meta.get(key) for key in ("low", "high", "above", "below"))
    if ((low is not None and value < low) or (high is not None and value > high)
            or (above is not None and value <= above) or (below is not None and value >= below)):
        raise ConfigError(f"{flag} must be {_bounds(base, meta)}, got {value}")
    return value


def _check_encodable(flag: str, text: str) -> None:
    """Refuse a text holding a lone surrogate: a byte that was not UTF-8 in an argument (Python keeps
    it as one) or a broken escape in JSON; no tokenizer can read it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        char = text[error.start]
        shown = f"byte \\x{ord(char) - 0xDC00:02x}" if "\udc80" <= char <= "\udcff" else f"{char!r}"
        raise ConfigError(f"{flag} holds {shown} at character {error.start + 1}, which is not UTF-8 text; give the "
                          f"text in UTF-8 (check the terminal's or the file's encoding)") from None


def check_value(owner: type, name: str, value: Any) -> Any:
    """`value` for field `name` of dataclass `owner`, checked against the field's type, choices and
    bounds (a list becomes a tuple, one text a one-item tuple); a `ConfigError` naming the flag if
    it does not fit. The one check behind flags, keyword arguments and JSON fields alike."""
    spec, flag, (base, optional, sequence) = _field_checks(owner)[name]
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{flag} needs a value ({_NOUNS[base]}); it cannot be None")
    if not sequence:
        return _check_item(flag, base, spec.metadata, value)
    if isinstance(value, str) and base == "str":
        value = (value,)  # stop="\n\n" is one stop text, not two
    if isinstance(value, (str, bytes, dict)) or not isinstance(value, (list, tuple)):
        raise ConfigError(f"{flag} takes a list of items ({_NOUNS[base]} each), got {value!r}")
    return tuple(_check_item(flag, base, spec.metadata, item) for item in value)


def check_fields(config: Any) -> None:
    """Check every field of a dataclass instance with `check_value`, normalising it in place."""
    for spec, _, _ in _field_checks(type(config)).values():
        if spec.metadata.get("help") is not None:
            setattr(config, spec.name, check_value(type(config), spec.name, getattr(config, spec.name)))


def to_dict(config: Any) -> dict:
    """The config as a plain dict (what checkpoints and config.json store)."""
    return dataclasses.asdict(config)


def from_dict(config_class: type, data: dict) -> Any:
    """Rebuild a config from `to_dict` output, ignoring keys this version does not know."""
    known = {f.name for f in dataclasses.fields(config_class)}
    return config_class(**{k: v for k, v in data.items() if k in known})


_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s?)?$")


def parse_duration(text: str, flag: str = "--time-budget") -> float:
    """Seconds in a duration such as `90`, `90s`, `10m` or `1h30m`."""
    match = _DURATION.match(text.strip())
    if not text.strip() or not match or not any(match.groups()):
        raise ConfigError(f"{flag} {text!r} is not a duration; write it like 90s, 10m or 1h30m")
    hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    return hours * 3600 + minutes * 60 + seconds


SEED_MAX = 2**32 - 1
STEPS_MAX = 10**9
WIDTH_MAX = 1 << 14  # units or embedding width: textgen's largest preset has 1024
BATCH_MAX = 1 << 16
WINDOW_MAX = 1_000_000  # tokens per window, text or chunk
# ceilings far above any useful value: they keep a typo from asking for terabytes or running for days
FRACTION = dict(low=0.0, below=1.0)  # dropout-like: a share that must leave something


@dataclass
class DataConfig:
    """Where the text comes from and how it becomes tokens."""

    corpus: str = option("tiny_shakespeare", "named corpus, Hugging Face id owner/name, or local file/folder")
    data_dir: str | None = option(None, "local data folder for named corpora (default: $TEXTGEN_DATA, else ./corpora)")
    text_column: str | None = option(None, "column holding the text (default: the corpus's own, else 'text')")
    label_column: str | None = option(None, "column holding the label for classification (default: 'label')")
    encoding: str = option("utf-8", "text encoding of local files")
    tokenizer: str = option("char", "per-character or SentencePiece subword tokens", choices=("char", "sentencepiece"))
    vocab_size: int = option(2000, "SentencePiece vocabulary size (char vocabularies come from the data)",
                             low=1, high=1 << 20)
    sentencepiece_model: str = option("unigram", "SentencePiece algorithm", choices=("unigram", "bpe"))
    num_proc: int = option(1, "worker processes for SentencePiece encoding", low=1, high=256)
    split_seed: int = option(0, "seed for carving a validation split where a corpus has none", low=0,
                            high=SEED_MAX)
    lm_splits: str = option("train", "splits whose text trains a language model, comma-separated (labels "
                                     "ignored), e.g. train,unsupervised for imdb")

    def __post_init__(self) -> None:
        check_fields(self)
        if not self.corpus:
            raise ConfigError("--corpus is empty; name a corpus (e.g. tiny_shakespeare), a Hub id or a path")


@dataclass
class ModelConfig:
    """The recurrent language model; saved in every checkpoint and enough to rebuild it."""

    cell: str = option("lstm", "recurrent cell (rnn: a plain tanh network, the baseline without gates)",
                       choices=("lstm", "gru", "rnn"))
    num_layers: int = option(2, "stacked recurrent layers", flag="--layers", low=1, high=64)
    hidden_size: int = option(512, "units per recurrent layer", flag="--hidden", low=1, high=WIDTH_MAX)
    embed_size: int = option(512, "token embedding width", flag="--embed", low=1, high=WIDTH_MAX)
    dropout: float = option(0.1, "dropout between recurrent layers", **FRACTION)
    embed_dropout: float = option(0.0, "dropout on token embeddings", **FRACTION)
    output_dropout: float = option(0.1, "dropout before the output layer", **FRACTION)
    tie_weights: bool = option(True, "share input embedding and output weights where the widths allow (an LSTM projects down to fit)")
    vocab_size: int = option(0, "token count; read from the tokenizer, never typed", low=0, high=1 << 20)
    condition: str | None = option(None, "learn this label column of the corpus (e.g. label) as context fed "
                                         "with every token, so that `textgen sample --label` steers the text")
    label_embed_size: int = option(16, "width of the label embedding that --condition feeds with every token",
                                   flag="--label-embed",
                                   low=1, high=WIDTH_MAX)
    label_dropout: float = option(0.2, "with --condition, withhold the label from this fraction of the rows of "
                                       "each training window, so the model also writes (and scores) text without one",
                                   **FRACTION)
    label_names: tuple[str, ...] = option((), "the --condition labels, index + 1 = label id (0: no label); "
                                              "read from the data, never typed")

    def __post_init__(self) -> None:
        check_fields(self)
        if self.condition == "":
            raise ConfigError("--condition is empty; name the label column to learn as context, e.g. label")


@dataclass
class TrainConfig:
    """One training run: optimisation, schedule, precision, checkpointing."""

    task: str = option("lm", "what to train", choices=("lm", "classify"))
    preset: str = option("auto", "model and batch sizes to start from (auto: compact for a language model of a "
                                 "local text under 300 KB, else small)",
                         choices=("auto", "tiny", "compact", "small", "medium", "large"))
    out: str | None = option(None, "run folder (default: runs/<corpus>-<cell>-<time>)")
    resume: bool = option(False, "continue the run in --out from its last.pt")
    overwrite: bool = option(False, "start again in an --out that holds a run (its files are replaced once the "
                                    "new run's first checkpoint is written)")
    batch_size: int = option(64, "sequences per batch (per process under DDP)", low=1, high=BATCH_MAX)
    seq_len: int = option(128, "tokens per truncated-backprop window", low=1, high=WINDOW_MAX)
    lr: float = option(2e-3, "peak learning rate (AdamW)", above=0.0, high=1e30)  # float32 holds it, and its steps
    weight_decay: float = option(0.01, "AdamW weight decay", low=0.0, high=10.0)
    warmup_steps: int = option(100, "linear warm-up steps before cosine decay", low=0, high=STEPS_MAX)
    min_lr_ratio: float = option(0.1, "final learning rate as a fraction of --lr", low=0.0, high=1.0)
    grad_clip: float = option(1.0, "clip the gradient norm to this (0 disables)", low=0.0)
    max_steps: int | None = option(None, "stop after this many optimizer steps", low=1, high=STEPS_MAX)
    time_budget: str | None = option(None, "stop cleanly after this long, e.g. 90s, 10m or 2h (the schedule fits it; "
                                           "given neither this nor --max-steps, 10m)")
    eval_interval: int = option(500, "evaluate on the validation split every N steps", low=1, high=STEPS_MAX)
    eval_tokens: int | None = option(None, "tokens of the validation split per evaluation (default: all)",
                                     low=1, high=10**12)
    checkpoint_interval: int = option(500, "write last.pt every N steps", low=1, high=STEPS_MAX)
    log_interval: int = option(10, "append to metrics.jsonl every N steps", low=1, high=STEPS_MAX)
    seed: int = option(0, "seed for weights, dropout and data order", low=0, high=SEED_MAX)
    precision: str = option("auto", "compute precision", choices=("auto", "fp32", "bf16", "fp16"))
    device: str = option("auto", "where to train", choices=("auto", "cpu", "cuda", "mps"))

    def __post_init__(self) -> None:
        check_fields(self)
        if self.time_budget is not None and not self.time_budget_seconds > 0:  # also validates the text
            raise ConfigError(f"--time-budget {self.time_budget} must be longer than 0; write it like 90s or 10m")
        if self.resume and not self.out:
            raise ConfigError("--resume needs --out RUN_DIR naming the run to continue")
        if self.resume and self.overwrite:
            raise ConfigError("--resume continues the run in --out and --overwrite starts it again; choose one")

    @property
    def time_budget_seconds(self) -> float | None:
        """--time-budget in seconds, or None when there is none."""
        return None if self.time_budget is None else parse_duration(self.time_budget)


# Presets chosen by measuring on a 2-core AVX2 CPU (fp32); see README "Presets" for the runs.
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "tiny": {"model": dict(num_layers=1, hidden_size=64, embed_size=64, dropout=0.0, output_dropout=0.0),
             "train": dict(batch_size=16, seq_len=32, lr=3e-3, warmup_steps=20, eval_interval=100)},
    # a small text (under AUTO_COMPACT_BELOW): fewer units and more dropout, evaluated often, so that the
    # best checkpoint comes before the model learns the text by heart
    "compact": {"model": dict(num_layers=2, hidden_size=256, embed_size=256, dropout=0.3, output_dropout=0.3),
                "train": dict(batch_size=32, seq_len=128, lr=4e-3, warmup_steps=100, eval_interval=100)},
    "small": {"model": dict(num_layers=2, hidden_size=384, embed_size=384, dropout=0.1, output_dropout=0.1),
              "train": dict(batch_size=32, seq_len=128, lr=4e-3, warmup_steps=100, eval_interval=500)},
    "medium": {"model": dict(num_layers=2, hidden_size=512, embed_size=512, dropout=0.1, output_dropout=0.1),
               "train": dict(batch_size=64, seq_len=128, lr=2e-3, warmup_steps=100, eval_interval=250)},
    "large": {"model": dict(num_layers=3, hidden_size=1024, embed_size=512, dropout=0.2, output_dropout=0.2),
              "train": dict(batch_size=64, seq_len=128, lr=1e-3, warmup_steps=200, eval_interval=500)},
}


# --preset auto picks compact for a language model trained from scratch on a local text of fewer
# bytes than this, else small (measured with scripts/bench_transfer.py; see docs/own-text.md).
AUTO_COMPACT_BELOW = 300_000

# Fine-tuning a language model (--init-from) starts from these where nothing was typed: the model's
# shape comes from the pretrained model and the batches from the preset. Measured with
# scripts/bench_transfer.py on 100 KB slices of the gutenberg validation books (see docs).
LM_FINETUNE: dict[str, dict[str, Any]] = {
    "model": dict(dropout=0.2, output_dropout=0.2, embed_dropout=0.0),
    "train": dict(lr=3e-4, warmup_steps=50, eval_interval=50),
    # Stop at the first evaluation that is no better: on 100 KB of a book, no later one ever was again
    # (10-minute runs on two books: 10 of 10 and 8 of 8 evaluations after the best were worse), and near
    # the best one evaluation gains under 0.003 bits/char, so stopping one too soon costs less than that
    "finetune": dict(patience=1),
}


# Made-up and mixed-case words ("meN") about as rare as in the real text; at 1.0 the bundled models
# made up 2-3 times the words and wrote mixed case in a third to a half of their samples (docs/sampling.md)
DEFAULT_TEMPERATURE = 0.8


@dataclass
class SampleConfig:
    """Text generation: length, decoding controls, stops, batch of samples, seed."""

    length: int = option(500, "characters to generate per sample", low=1, high=10_000_000)
    temperature: float = option(DEFAULT_TEMPERATURE, "divide the logits by this; <= 0 means greedy (the most "
                                                     "likely token)")
    top_k: int | None = option(None, "sample only from the k most likely tokens", low=1, high=1 << 20)
    top_p: float = option(1.0, "nucleus: sample from the smallest set of tokens holding this much probability",
                          above=0.0, high=1.0)
    min_p: float = option(0.0, "drop tokens less likely than this fraction of the most likely one", **FRACTION)
    typical_p: float = option(1.0, "sample from the most typical tokens holding this much probability", above=0.0,
                              high=1.0)
    repetition_penalty: float = option(1.0, "divide positive (multiply negative) logits of recent tokens by this",
                                       above=0.0)
    repetition_window: int = option(64, "how many recent tokens --repetition-penalty looks at", low=1,
                                    high=WINDOW_MAX)
    no_repeat_ngram: int = option(0, "never repeat an n-gram of this many tokens (0: off)", low=0, high=1000)
    repeat_guard: float = option(0.2, "when sampling, a token that would extend a span of 24 or more tokens already "
                                      "in the last 2,048 keeps at most 1 minus this of the probability, so loops "
                                      "end (0: off; up to 0.5)", low=0.0, high=0.5)
    beams: int = option(1, "beam search with this many beams (1: sample)", low=1, high=64)
    length_penalty: float = option(1.0, "beam score is log-probability / tokens ** this")
    stop: tuple[str, ...] = option((), "end a sample where this text appears (repeatable; typed as a flag, \\n is a "
                                       "newline, \\t a tab, \\\\ a backslash)")
    label: tuple[str, ...] = option((), "generate under this label, for a model trained with --condition "
                                        "(repeatable or comma-separated: one label per sample in turn; \\, is a comma in a label)")
    guidance: float = option(0.0, "with --label: move each step's log-probabilities away from the unlabelled "
                                  "ones by this multiple of their difference (classifier-free guidance; 0: off)",
                             low=0.0, high=100.0)  # beyond, the arithmetic overflows long before the text changes
    num_samples: int = option(1, "samples generated together as one batch (at least one per --label)", low=1,
                              high=1000)
    seed: int | None = option(None, "seed for exact reproducibility (unset: random); sample i uses seed + i",
                              low=0, high=SEED_MAX)
    device: str = option("auto", "where to generate", choices=("auto", "cpu", "cuda", "mps"))
    quantize: str = option("none", "int8: 8-bit weights for faster steps on a CPU (texts differ slightly "
                           "from full precision, and a batch's rows no longer match single runs)",
                           choices=("none", "int8"))

    def __post_init__(self) -> None:
        check_fields(self)
        if "" in self.stop:
            raise ConfigError("--stop '' would stop before the first character; give a non-empty text")
        # "a,b" is two labels; "good\\, not great" one that holds a comma
        self.label = tuple(name.strip().replace("\\,", ",") for names in self.label
                           for name in re.split(r"(?<!\\),", names))
        if "" in self.label:
            raise ConfigError("--label names an empty label; give label names such as pos or neg")
        self.num_samples = max(self.num_samples, len(self.label))
        if self.guidance and not self.label:
            raise ConfigError(f"--guidance {self.guidance} steers towards a --label; add --label or drop --guidance")
        if self.guidance and self.beams > 1:
            raise ConfigError(f"--guidance steers sampling, and --beams {self.beams} searches; drop one")
        controls = self.sampling_controls()
        if self.beams > 1 and self.num_samples > 1:
            raise ConfigError(f"--beams {self.beams} returns the single most likely text, so it cannot make "
                              f"--num-samples {self.num_samples}; choose one")
        if self.beams > 1 and controls:
            raise ConfigError(f"--beams searches for the most likely text and takes no sampling controls; "
                              f"drop {', '.join(controls)} or drop --beams")
        if self.greedy and [c for c in controls if c != "--temperature"]:
            raise ConfigError(f"--temperature {self.temperature:g} means greedy decoding, which "
                              f"{', '.join(c for c in controls if c != '--temperature')} cannot change; "
                              f"drop those flags or use a temperature above 0")
        if self.greedy and self.num_samples > 1:
            raise ConfigError(f"--temperature {self.temperature:g} means greedy decoding, so --num-samples "
                              f"{self.num_samples} would give identical texts; use a temperature above 0")

    @property
    def greedy(self) -> bool:
        """True when decoding always takes the most likely token."""
        return self.temperature <= 0 and self.beams == 1

    def sampling_controls(self) -> list[str]:
        """The flags of the sampling controls set away from their neutral values."""
        # the default temperature is no control that a user set (beam search sets it aside)
        neutral = {"temperature": DEFAULT_TEMPERATURE, "top_k": None, "top_p": 1.0, "min_p": 0.0, "typical_p": 1.0}
        return [flag_of(SampleConfig, name) for name, value in neutral.items() if getattr(self, name) != value]


# where a classifier's label comes from (the order of ClassifierConfig.temperatures)
FEATURES = ("recurrent", "ngram", "both")
LONG_TEXT = ("whole", "truncate", "tail", "chunk")
NGRAM_BUCKETS_LIMIT = 1 << 24  # 64 MB of float32 per class: far above what a bundled model can carry


@dataclass
class ClassifierConfig:
    """The classification head on a language model's encoder; saved in classifier checkpoints."""

    bidirectional: bool = option(False, "read texts both ways (from scratch only: a language model reads forwards)")
    head_hidden: int = option(64, "units in the head's hidden layer", low=1, high=WIDTH_MAX)
    head_dropout: float = option(0.3, "dropout before each layer of the head", **FRACTION)
    head_norm: bool = option(False, "batch-normalize the pooled features and the head's hidden layer (ULMFiT)")
    token_dropout: float = option(0.0, "while training, drop this fraction of whole tokens from each text",
                                  **FRACTION)
    max_len: int = option(256, "tokens the encoder reads at once; longer texts follow --long-text", low=1,
                          high=WINDOW_MAX)
    long_text: str = option("whole", "texts over --max-len: read the whole text in max-len chunks carrying "
                                      "the state (memory bounded by max-len; training backpropagates through "
                                      "the last chunk), keep the first max-len tokens (truncate) or the last "
                                      "(tail: where reviews give their verdict), or average the probabilities "
                                      "of independent max-len chunks",
                            choices=LONG_TEXT)
    label_names: tuple[str, ...] = option((), "class names, index = label id; read from the data, never typed")
    features: str = option("recurrent", "what a label comes from: the recurrent encoder, hashed word n-grams "
                                        "(fastText), or both, their logits mixed by the fitted n-gram weight",
                           choices=FEATURES)
    ngram_buckets: int = option(0, "rows of the hashed word n-gram table beside the encoder (0: none); with "
                                   "--features ngram or both, e.g. 262144", low=0, high=NGRAM_BUCKETS_LIMIT)
    ngram_max: int = option(3, "longest word n-gram hashed (1: single words)", low=1, high=8)
    char_ngrams: int = option(0, "also hash each word's character 3- to N-grams beside its word n-grams "
                                 "(fastText subwords; 0: none), e.g. 5", low=0, high=8)
    negation: bool = option(False, "mark the words after a negation (not, no, never, n't, ...) up to the next "
                                   "punctuation mark or 'but' as negated in the n-grams: \"not bad\" then says "
                                   "nothing of \"bad\" (Das and Chen 2001)")
    negation_words: int = option(0, "with --negation: a scope ends after this many words at most (0: at the next "
                                    "punctuation mark or 'but' only)", low=0, high=100)
    negation_sign: bool = option(False, "with --negation: a negated word counts against its own n-grams (\"not bad\" "
                                        "reads as minus \"bad\", for every word the n-grams know) instead of as "
                                        "another word")
    ngram_weight: float = option(0.5, "--features both: logits = (1 - w) * recurrent + w * n-grams; fitted on "
                                      "validation, never typed", low=0.0, high=1.0)
    temperatures: tuple[float, ...] = option((1.0, 1.0, 1.0), "the logits of each --features choice (recurrent, "
                                                              "ngram, both) are divided by its temperature before "
                                                              "the softmax; fitted on validation, never typed",
                                             above=0.0)
    decisive_margin: float = option(0.0, "--features both: a text whose weighted n-gram logits lead by more than "
                                          "this is labelled by the n-grams alone, unread by the encoder (0: read "
                                          "every text); fitted on validation as the widest spread of the recurrent "
                                          "part's weighted logits, never typed", low=0.0)

    def __post_init__(self) -> None:
        check_fields(self)
        if self.char_ngrams and not 3 <= self.char_ngrams <= 8:
            raise ConfigError(f"--char-ngrams must be 0 (none) or from 3 to 8, got {self.char_ngrams}")
        if self.negation_sign and not self.negation:
            raise ConfigError("--negation-sign counts negated words against themselves and needs --negation to find "
                              "them; add --negation")
        if len(self.temperatures) != len(FEATURES):
            raise ConfigError(f"temperatures must be {len(FEATURES)} positive numbers, got {self.temperatures}")
        if self.features != "recurrent" and not self.ngram_buckets:
            raise ConfigError(f"--features {self.features} needs hashed word n-grams, and this classifier has none; "
                              f"use --features recurrent, or train one with --ngram-buckets N (e.g. 262144)")

    @property
    def temperature(self) -> float:
        """The temperature of the chosen --features."""
        return self.temperatures[FEATURES.index(self.features)]


@dataclass
class FinetuneConfig:
    """How a classifier is trained from a language model (ULMFiT) or from scratch."""

    init_from: str | None = option(None, "language model (or classifier, to go on fine-tuning it) to start from: "
                                         "run folder, .pt or bundled name such as reviews; none: from scratch "
                                         "(default: english for a language model of a local text under 300 KB "
                                         "in its characters, else from scratch)")
    lm_finetune_steps: int = option(0, "first fine-tune the language model on the target texts this many steps",
                                    low=0, high=STEPS_MAX)
    unfreeze_every: int = option(1, "evaluations between unfreezing the next layer group, top down (0: all at once)",
                                 low=0, high=10**6)
    layer_lr_decay: float = option(2.6, "discriminative learning rates: each lower layer group gets lr / this",
                                   above=0.0)
    patience: int = option(3, "stop after this many evaluations in a row without a better validation figure "
                              "(accuracy for a classifier, loss for a language model; the best checkpoint is kept; "
                              "1 when a language model is fine-tuned with --init-from); 0: never stop early",
                           low=0, high=10**6)

    def __post_init__(self) -> None:
        check_fields(self)
        if self.lm_finetune_steps and not self.init_from:
            raise ConfigError("--lm-finetune-steps fine-tunes a pretrained language model; give --init-from RUN")
