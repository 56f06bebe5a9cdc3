"""Corpora as `datasets` splits: named corpora, local files and folders, Hugging Face Hub ids.

`load_corpus` always returns a `train` and a `validation` split (carving one where the source has
none); `split_texts` turns a split back into the text stream a language model reads.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import importlib.resources
import json
import logging
import os
import re
import socket
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from textgen.config import DataConfig
from textgen.errors import ConfigError, CorpusError
from textgen.data.files import check_not_device, local_or_example

if TYPE_CHECKING:  # imported where a corpus is read: `datasets` costs half a second that sampling never needs
    import datasets

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CorpusInfo:
    """Where a named corpus lives on the Hub and which columns hold its text and labels."""

    name: str
    hub_id: str | None  # None: a local corpus only (the shared data folder), not on the Hub
    revision: str | None
    text_column: str
    label_column: str | None
    label_names: tuple[str, ...] | None
    splits: tuple[str, ...]
    # markup in the published text that stands for a line break (IMDb keeps its HTML <br />)
    line_break_markup: tuple[str, ...] = ()


NAMED_CORPORA: dict[str, CorpusInfo] = {
    info.name: info
    for info in (
        CorpusInfo("tiny_shakespeare", "karpathy/tiny_shakespeare", "refs/convert/parquet", "text", None, None,
                   ("train", "validation", "test")),
        CorpusInfo("rotten_tomatoes", "cornell-movie-review-data/rotten_tomatoes", None, "text", "label",
                   ("neg", "pos"), ("train", "validation", "test")),
        CorpusInfo("sst2", "stanfordnlp/sst2", None, "sentence", "label", ("negative", "positive"),
                   ("train", "validation", "test")),
        CorpusInfo("imdb", "stanfordnlp/imdb", None, "text", "label", ("neg", "pos"),
                   ("train", "unsupervised", "test"), line_break_markup=("<br />", "<br/>", "<br>")),
        # 24 public-domain books split by whole books, for pre-training the general English model
        CorpusInfo("gutenberg", None, None, "text", None, None, ("train", "validation", "test")),
    )
}

# File extension -> datasets builder; anything else given as a single file is read as plain text.
BUILDERS = {".txt": "text", ".csv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}
SPLIT_ALIASES = {"train": "train", "validation": "validation", "valid": "validation", "dev": "validation",
                 "test": "test", "unsupervised": "unsupervised"}
_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
_DECODE_CHUNK = 1 << 20


@dataclass
class Corpus:
    """A corpus loaded as splits, with the columns that hold its text and (for classification) labels."""

    name: str
    splits: datasets.DatasetDict
    text_column: str
    label_column: str | None
    label_names: list[str] | None
    source: str
    line_rows: bool
    content: str = ""  # a local corpus's files' digest: what its caches are keyed on, not their dates


def resolve_data_dir(data_dir: str | None) -> Path:
    """The folder holding named corpora: `data_dir`, else $TEXTGEN_DATA, else ./corpora."""
    return Path(data_dir or os.environ.get("TEXTGEN_DATA") or "corpora").expanduser()


def bundled_corpus(name: str) -> Path | None:
    """The folder of a corpus that ships inside the package (tiny_shakespeare), or None."""
    folder = importlib.resources.files("textgen.corpora") / name
    return Path(str(folder)) if folder.is_dir() else None


def hub_reachable(timeout: float = 2.0) -> bool:
    """Whether the Hugging Face Hub answers a TCP connection within `timeout` seconds."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    url = urllib.parse.urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)),
                                 timeout=timeout).close()
        return True
    except OSError:
        return False


@contextmanager
def hub_offline() -> Iterator[None]:
    """Offline mode for `datasets` and `huggingface_hub` inside the block: cached copies still load,
    and nothing waits on the network or retries."""
    from unittest import mock

    import datasets
    from huggingface_hub import constants

    with mock.patch.object(constants, "HF_HUB_OFFLINE", True), \
            mock.patch.object(datasets.config, "HF_HUB_OFFLINE", True):
        yield


def _local_training_files(config: DataConfig) -> list[Path] | None:
    """A local corpus's training files (a single file: itself), or None for a Hub corpus."""
    path = local_or_example("--corpus", config.corpus)
    check_not_device("--corpus", path)
    if not path.exists() and config.corpus in NAMED_CORPORA:
        path = resolve_data_dir(config.data_dir) / config.corpus
        path = path if path.is_dir() else bundled_corpus(config.corpus)
    if path is None or not path.exists():
        return None
    if path.is_file():
        return [path]
    try:
        return _split_files(path).get("train", [])
    except CorpusError:
        return None


def local_text_bytes(config: DataConfig) -> int | None:
    """The size on disk of a local corpus's training files, or None for a Hub corpus: a cheap
    measure of the text before loading it."""
    files = _local_training_files(config)
    return None if files is None else sum(file.stat().st_size for file in files)


def local_text_sample(config: DataConfig, size: int = 100_000) -> str | None:
    """About the first `size` bytes of a local corpus's training files as text, markup and all (a
    csv's commas, a json's keys), or None for a Hub corpus: a cheap look at the text before loading it."""
    files = _local_training_files(config)
    if files is None:
        return None
    raw = b""
    for file in files:
        with file.open("rb") as handle:
            raw += handle.read(size - len(raw))
        if len(raw) >= size:
            break
    return raw.decode(config.encoding, errors="replace")


def load_corpus(config: DataConfig, task: str = "lm", evaluate: str | None = None,
                condition: str | None = None) -> Corpus:
    """The corpus `config.corpus` names, with `train` and `validation` splits ready for `task` ("lm" or
    "classify"); to `evaluate` one split, a corpus with only that split (e.g. test files) is enough.
    A language model conditioned on the label column `condition` gets the labels too; its wholly
    unlabelled splits (imdb's unsupervised) stay, their rows without a label."""
    import datasets
    spec = config.corpus
    info = NAMED_CORPORA.get(spec)
    path = local_or_example("--corpus", spec)
    check_not_device("--corpus", path)
    if path.exists():
        splits, line_rows, content = _load_local(path, config.encoding)
        source = f"local {'folder' if path.is_dir() else 'file'} {path.resolve()}"
    elif info is not None:
        folder = resolve_data_dir(config.data_dir) / spec
        bundled = bundled_corpus(spec)
        if folder.is_dir():
            splits, line_rows, content = _load_local(folder, config.encoding)
            source = f"local folder {folder.resolve()}"
        elif bundled is not None:
            splits, line_rows, content = _load_local(bundled, config.encoding)
            source = f"the copy bundled with textgen ({bundled})"
        elif info.hub_id is None:
            raise CorpusError(f"corpus {spec!r} is not on the Hugging Face Hub and is not in {folder}; point "
                              f"--data-dir (or TEXTGEN_DATA) at the folder that holds {spec}/")
        else:
            splits, line_rows, content = _load_hub(info.hub_id, info.revision, tried=folder), False, ""
            source = f"hub {info.hub_id}@{info.revision or 'main'}"
    elif _HUB_ID.match(spec) and not spec.startswith(".") and path.suffix not in BUILDERS:
        splits, line_rows, content = _load_hub(spec, None, tried=None), False, ""
        source = f"hub {spec}"
    elif "/" in spec or os.sep in spec or path.suffix:
        raise CorpusError(f"no file or folder at {spec!r}; check the path, or give a named corpus "
                          "or a Hub id owner/name")
    else:
        known = ", ".join(NAMED_CORPORA)
        raise CorpusError(f"unknown corpus {spec!r}; use one of {known}, a Hugging Face Hub id like owner/name, "
                          "or a path to a local file or folder")

    if "train" in splits:
        reference = "train"
    elif evaluate in splits:
        reference = evaluate
    else:
        raise CorpusError(f"{source} has no training split (has {', '.join(sorted(splits)) or 'no splits'}); "
                          f"add train.<ext>" + (", or evaluate one of those with --split" if evaluate else ""))
    text_column = _pick_column(splits, _text_candidates(config, info), "text", "--text-column", spec, reference)
    splits = _text_as_strings(splits, text_column, spec)
    if info is not None and info.line_break_markup:
        splits = _markup_to_newlines(splits, text_column, info.line_break_markup)
    label_column, label_names = None, None
    if task == "classify" or condition:
        if task == "classify":
            wanted, flag = config.label_column or (info and info.label_column) or "label", "--label-column"
        else:
            wanted, flag = condition, "--condition"
        label_column = _pick_column(splits, (wanted,), "label", flag, spec, reference)
        if label_column == text_column:
            raise CorpusError(f"{flag} {label_column} is the column the text is read from too; the labels must be "
                              f"another column (choose it with {flag}, or the text's with --text-column)")
        labelled = _drop_unlabelled_splits(splits, label_column, spec, reference)
        labelled, label_names = _encode_labels(labelled, label_column, info, spec, reference)
        splits = labelled if task == "classify" else datasets.DatasetDict({**splits, **labelled})
        if len(label_names) < 2 and evaluate is None:  # a file of one label can still be scored
            needs = "a classifier" if task == "classify" else "a model conditioned on labels"
            raise CorpusError(f"corpus {spec!r} has {len(label_names)} label(s) ({', '.join(label_names)}) in column "
                              f"{label_column!r}; {needs} needs texts of two or more labels")
    corpus = Corpus(spec, splits, text_column, label_column, label_names, source, line_rows, content)
    for split in corpus.splits:
        if not any(piece.strip() for piece in split_texts(corpus, split)):
            raise CorpusError(f"split {split!r} of corpus {spec!r} ({source}) has no text, only whitespace; "
                              "give a corpus with text in it")
    # a validation carve is for training (and for scoring the validation a file lacks); scoring the
    # train split of a single file scores all of it
    if "validation" not in corpus.splits and "train" in corpus.splits and evaluate != "train":
        corpus.splits = _carve_validation(corpus, task, config.split_seed, _stratifying_column(config, info, splits))
    return corpus


def language_model_split(corpus: Corpus, names: str) -> str:
    """The split whose text trains a language model: `names` (comma-separated, e.g.
    "train,unsupervised") joined into one split of `corpus` when there are several. Labels are ignored."""
    import datasets
    wanted = [name.strip() for name in names.split(",") if name.strip()]
    missing = [name for name in wanted if name not in corpus.splits]
    if not wanted or missing:
        raise ConfigError(f"--lm-splits {names!r} names splits that {corpus.name} lacks "
                          f"({', '.join(missing) or 'none given'}); it has: {', '.join(corpus.splits)}")
    if "validation" in wanted:
        raise ConfigError("--lm-splits cannot include validation: that split measures the model; drop it")
    if len(wanted) == 1:
        return wanted[0]
    joined = "+".join(wanted)
    parts = [corpus.splits[name].select_columns([corpus.text_column]) for name in wanted]
    if corpus.label_column:  # a conditioned model: rows of an unlabelled split join with label -1, none
        parts = [part.add_column(corpus.label_column, corpus.splits[name][corpus.label_column]
                                 if corpus.label_column in corpus.splits[name].column_names else [-1] * len(part))
                 .cast_column(corpus.label_column, datasets.Value("int64"))
                 for name, part in zip(wanted, parts)]
    corpus.splits[joined] = datasets.concatenate_datasets(parts)
    return joined


def _markup_to_newlines(splits: datasets.DatasetDict, column: str, markup: tuple[str, ...]) -> datasets.DatasetDict:
    """`splits` with each piece of line-break markup in `column` replaced by a newline."""
    pattern = re.compile("|".join(map(re.escape, markup)))

    def replace(rows: dict) -> dict:
        return {column: [pattern.sub("\n", text) if text else text for text in rows[column]]}

    return splits.map(replace, batched=True, desc="line-break markup to newlines")


def _stratifying_column(config: DataConfig, info: CorpusInfo | None, splits: datasets.DatasetDict) -> str | None:
    """The label column (integers or strings) of a labelled corpus's train split, which a carved
    validation split stratifies by, so a language model and a classifier hold out the same rows."""
    import pyarrow as pa
    column = config.label_column or (info.label_column if info else None) or "label"
    train = splits["train"]
    if column not in train.column_names:
        return None
    value_type = train.data.column(column).type
    labels = pa.types.is_integer(value_type) or pa.types.is_string(value_type) or pa.types.is_large_string(value_type)
    return column if labels and train.data.column(column).null_count == 0 else None


def split_texts(corpus: Corpus, split: str, batch_size: int = 1000) -> Iterator[str]:
    """Pieces of text whose concatenation is the language-modelling stream of `split`."""
    rows = corpus.splits[split].select_columns([corpus.text_column])
    for batch in rows.iter(batch_size=batch_size):
        yield "".join(stream_rows(batch[corpus.text_column], corpus.line_rows))


def stream_rows(texts: list[str | None], line_rows: bool) -> list[str]:
    """Each row's text as it appears in the language-modelling stream."""
    if line_rows:
        return [text or "" for text in texts]
    # rows are separate documents; a newline keeps one from running into the next
    return [text if text.endswith("\n") else text + "\n" for text in (text or "" for text in texts)]


def count_chars(corpus: Corpus, split: str) -> int:
    """Length in characters of the language-modelling stream of `split`."""
    return sum(len(piece) for piece in split_texts(corpus, split))


def _text_as_strings(splits: datasets.DatasetDict, column: str, spec: str) -> datasets.DatasetDict:
    """`splits` whose text column holds strings: numbers and booleans (a csv column of digits) become
    their text; lists, objects or mixed JSON values are a CorpusError."""
    import datasets
    for name, split in splits.items():
        feature = split.features[column]
        dtype = feature.dtype if isinstance(feature, datasets.Value) else None
        if dtype in ("string", "large_string", "null"):
            continue
        if dtype is None or not (dtype == "bool" or dtype.startswith(("int", "uint", "float"))):
            held = dtype or type(feature).__name__.lower()
            raise CorpusError(f"column {column!r} of split {name!r} of corpus {spec!r} holds {held} values, not "
                              f"text; pick the text column with --text-column")
        splits[name] = split.cast_column(column, datasets.Value("string"))
    return splits


def _text_candidates(config: DataConfig, info: CorpusInfo | None) -> tuple[str, ...]:
    if config.text_column:
        return (config.text_column,)
    # sst2 calls its text "sentence" on the Hub but "text" in local files
    return tuple(dict.fromkeys((info.text_column if info else "text", "text")))


def _load_local(path: Path, encoding: str) -> tuple[datasets.DatasetDict, bool, str]:
    """Splits read from a local file or folder, whether their rows are lines of plain text, and the
    files' digest. `datasets` keys its cache on paths and modification times, so a file rewritten
    within the same second (or by `cp -p`, `rsync -t`, `tar x`) read back stale: each content gets a
    cache of its own."""
    import datasets
    _check_encoding(encoding)
    data_files = _split_files(path) if path.is_dir() else {"train": [path]}
    builders = {BUILDERS.get(file.suffix.lower(), "text") for files in data_files.values() for file in files}
    if len(builders) > 1:
        raise CorpusError(f"{path} mixes file formats ({', '.join(sorted(builders))}); keep one format per folder")
    builder = builders.pop()
    for file in (file for files in data_files.values() for file in files):
        if builder != "parquet":
            _check_text_file(file, encoding)
    options = {"keep_linebreaks": True} if builder == "text" else {}
    if builder != "parquet":
        options["encoding"] = encoding
    content = _digest(data_files)
    options["cache_dir"] = str(Path(datasets.config.HF_DATASETS_CACHE) / "textgen-local" / content[:16])
    try:
        splits = datasets.load_dataset(builder, data_files={split: [str(f) for f in files]
                                                            for split, files in data_files.items()}, **options)
    except (datasets.exceptions.DatasetGenerationError, ValueError, OSError) as error:  # OSError: /proc files
        raise CorpusError(f"could not read {path} as {builder} ({_first_line(error.__cause__ or error)}); "
                          "check the file's format") from error
    return splits, builder == "text", content


def _digest(data_files: dict[str, list[Path]]) -> str:
    """SHA-256 of every data file's split, name and bytes (read in blocks: memory stays flat)."""
    digest = hashlib.sha256()
    for split, files in sorted(data_files.items()):
        for file in files:
            digest.update(f"{split}/{file.name}\0".encode())
            with open(file, "rb") as handle:
                while block := handle.read(1 << 20):
                    digest.update(block)
    return digest.hexdigest()


def _split_files(folder: Path) -> dict[str, list[Path]]:
    """Data files of `folder` grouped by the split their names give (`train.txt`, `valid-0001.jsonl`, ...)."""
    grouped: dict[str, list[Path]] = {}
    unnamed = []
    for file in sorted(folder.iterdir()):
        if not file.is_file() or file.suffix.lower() not in BUILDERS:
            continue
        split = SPLIT_ALIASES.get(file.stem.split("-")[0].lower())
        if split is None:
            unnamed.append(file)
        else:
            grouped.setdefault(split, []).append(file)
    if not grouped and not unnamed:
        raise CorpusError(f"{folder} has no data files; add <split>.txt, .csv, .json, .jsonl or .parquet files")
    if "train" in grouped:
        if unnamed:
            # e.g. tiny_shakespeare's input.txt, which is train + validation + test again
            logger.info("ignoring %s in %s: a train file is already there", ", ".join(f.name for f in unnamed), folder)
    elif unnamed:
        grouped["train"] = unnamed
    return grouped


def _check_encoding(encoding: str) -> None:
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise ConfigError(f"--encoding {encoding!r} is not a known text encoding; use e.g. utf-8, latin-1 or cp1252")


def _check_text_file(file: Path, encoding: str) -> None:
    """Raise a CorpusError naming the byte offset where `file` stops being valid `encoding`, or if it holds no text."""
    decoder = codecs.getincrementaldecoder(encoding)()
    offset, has_text = 0, False
    with open(file, "rb") as stream:
        while True:
            chunk = stream.read(_DECODE_CHUNK)
            pending = len(decoder.getstate()[0])
            try:
                text = decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as error:
                bad = offset - pending + error.start
                raise CorpusError(f"{file.resolve()}: byte {bad} (0x{error.object[error.start]:02x}) is not valid "
                                  f"{encoding}; pass --encoding with the file's real encoding (e.g. --encoding cp1252)")
            except UnicodeError as error:  # a codec's own complaint, e.g. utf-16 without a byte-order mark
                raise CorpusError(f"{file.resolve()} is not valid {encoding} ({error}); pass --encoding with the "
                                  f"file's real encoding")
            has_text = has_text or bool(text.strip())
            offset += len(chunk)
            if not chunk:
                break
    if not has_text:
        raise CorpusError(f"{file.resolve()} is empty or only whitespace; give a file with text in it")


def _load_hub(hub_id: str, revision: str | None, tried: Path | None) -> datasets.DatasetDict:
    """The Hub dataset's splits, renamed to train/validation/test; a CorpusError saying what was tried if it fails."""
    import datasets
    online = hub_reachable()
    try:
        with nullcontext() if online else hub_offline():
            loaded = datasets.load_dataset(hub_id, revision=revision)
    except (OSError, ValueError) as error:
        looked = f"no folder {tried} and " if tried else ""
        fix = (f"put its files at {tried}/<split>.<ext> (or point --data-dir or TEXTGEN_DATA at a folder holding "
               f"{tried.name}/)" if tried else "check the id (owner/name) or give a local file or folder")
        reason = _first_line(error) if online else "the Hub is out of reach and no cached copy exists"
        raise CorpusError(f"{looked}could not load {hub_id!r} from the Hugging Face Hub ({reason}); {fix}, "
                          "or run once online so datasets caches it") from error
    splits = datasets.DatasetDict({SPLIT_ALIASES[name]: split for name, split in loaded.items()
                                   if name in SPLIT_ALIASES})
    if "train" not in splits:
        raise CorpusError(f"Hub dataset {hub_id!r} has no train split (has {', '.join(loaded)}); use another corpus")
    return splits


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def _pick_column(splits: datasets.DatasetDict, candidates: tuple[str, ...], role: str, flag: str, spec: str,
                 reference: str = "train") -> str:
    columns = splits[reference].column_names
    for name in candidates:
        if name in columns:
            return name
    raise CorpusError(f"corpus {spec!r} has no {role} column {' or '.join(map(repr, candidates))} "
                      f"(columns: {', '.join(columns)}); pick one with {flag}")


def _missing_labels(split: datasets.Dataset, column: str) -> int:
    """Rows of `split` without a label: nulls, or negative ids (how the Hub marks unlabelled test rows)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    values = split.data.column(column)
    missing = values.null_count
    if pa.types.is_integer(values.type):
        missing += pc.sum(pc.less(values, 0)).as_py() or 0
    return missing


def _drop_unlabelled_splits(splits: datasets.DatasetDict, column: str, spec: str,
                            reference: str = "train") -> datasets.DatasetDict:
    """The splits that carry labels; wholly unlabelled ones (imdb's unsupervised) are left out, and said."""
    import datasets
    kept = datasets.DatasetDict()
    for name, split in splits.items():
        missing = _missing_labels(split, column)
        if missing == len(split) and name != reference:
            logger.info("dropping split %r of %s: it has no labels", name, spec)
        elif missing:
            raise CorpusError(f"split {name!r} of corpus {spec!r} has {missing} of {len(split)} rows without a label "
                              f"in column {column!r}; label every row or remove the unlabelled ones")
        else:
            kept[name] = split
    return kept


def _encode_labels(splits: datasets.DatasetDict, column: str, info: CorpusInfo | None,
                   spec: str, reference: str = "train") -> tuple[datasets.DatasetDict, list[str]]:
    """Splits whose label column is a ClassLabel with ids 0..n-1, and the label names by id."""
    import datasets
    import pyarrow as pa
    import pyarrow.compute as pc
    feature = splits[reference].features[column]
    if isinstance(feature, datasets.ClassLabel):
        return splits, list(feature.names)
    value_type = splits[reference].data.column(column).type
    if pa.types.is_string(value_type) or pa.types.is_large_string(value_type):
        splits = splits.class_encode_column(column)
        return splits, list(splits[reference].features[column].names)
    if not pa.types.is_integer(value_type):
        raise CorpusError(f"labels in column {column!r} of corpus {spec!r} are {value_type}, not integers or strings; "
                          "pick a label column with --label-column")
    ids = sorted(set().union(*(pc.unique(split.data.column(column)).to_pylist() for split in splits.values())))
    names = list(info.label_names) if info and info.label_names else [str(i) for i in ids]
    if ids[-1] >= len(names):
        # ids such as 1..5 stars: renumber them 0..n-1 and keep the original ids as names
        position = {label: index for index, label in enumerate(ids)}
        splits = splits.map(lambda rows: {column: [position[label] for label in rows[column]]}, batched=True)
        names = [str(i) for i in ids]
    return splits.cast_column(column, datasets.ClassLabel(names=names)), names


# A text without a validation split holds out its tail: 5% of it, but at least 20,000 characters up
# to a fifth of it. On 100 KB of a book, 5,000 characters scored english against its own fine-tune
# with a standard error of 0.024 bits/char (the difference itself was 0.06), 20,000 with 0.011
# (scripts in docs/own-text.md): too noisy to tell one evaluation from the next, which early stopping does.
VALIDATION_SHARE, VALIDATION_MIN_CHARS, VALIDATION_MAX_SHARE = 0.05, 20_000, 0.2


def validation_chars(total: int) -> int:
    """Characters of a text of `total` characters that a carved validation split holds."""
    return max(round(total * VALIDATION_SHARE), min(VALIDATION_MIN_CHARS, round(total * VALIDATION_MAX_SHARE)))


def _carve_validation(corpus: Corpus, task: str, seed: int, label_column: str | None) -> datasets.DatasetDict:
    """The corpus's splits plus a validation split taken from train: a seeded, stratified 10% of a
    labelled corpus's rows (the same rows for a language model as for a classifier, so pre-training
    never reads the classifier's validation texts), else the tail of the text."""
    import datasets
    train = corpus.splits["train"]
    splits = datasets.DatasetDict(corpus.splits)
    parts = None
    if task == "classify" or label_column is not None:
        # stratified so a small or skewed corpus keeps every class in both splits, and shuffled,
        # since a file sorted by label (imdb) would otherwise hold out one class only
        column = corpus.label_column or label_column
        labelled = train if isinstance(train.features[column], datasets.ClassLabel) else \
            train.class_encode_column(column)
        try:
            parts = labelled.train_test_split(test_size=0.1, seed=seed, stratify_by_column=column)
        except ValueError as error:  # too few rows, or a label on one row only
            if task == "classify":
                raise CorpusError(f"cannot carve a stratified validation split from the {len(train)} labelled rows "
                                  f"of {corpus.name} ({_first_line(error)}); add rows (two or more of each label) or "
                                  f"give a validation file beside the train file") from error
            # no classifier could be trained on these labels: a language model holds out the tail
    if parts is not None:
        splits["train"], splits["validation"] = parts["train"], parts["test"]
        logger.info("%s has no validation split; carved a stratified 10%% (%d rows, seed %d) from train",
                    corpus.name, len(parts["test"]), seed)
    elif len(train) == 1:
        text = train[0][corpus.text_column]
        cut = len(text) - validation_chars(len(text))
        splits["train"] = datasets.Dataset.from_dict({corpus.text_column: [text[:cut]]})
        splits["validation"] = datasets.Dataset.from_dict({corpus.text_column: [text[cut:]]})
        logger.info("%s has no validation split; carved the last %d of %d characters as validation",
                    corpus.name, len(text) - cut, len(text))
    else:
        # the tail, not a random sample, so validation text never interleaves with training text
        lengths = [len(text) for text in train[corpus.text_column]]
        wanted, held_out, chars = validation_chars(sum(lengths)), 0, 0
        while chars < wanted and held_out < len(train) - 1:
            held_out += 1
            chars += lengths[-held_out]
        held_out = max(1, held_out)
        splits["train"] = train.select(range(len(train) - held_out))
        splits["validation"] = train.select(range(len(train) - held_out, len(train)))
        logger.info("%s has no validation split; carved the last %d of %d rows as validation",
                    corpus.name, held_out, len(train))
    return splits


def read_texts(path: str | Path, text_column: str | None = None, encoding: str = "utf-8") -> Iterator[str]:
    """The texts in a local file, read lazily so that memory stays bounded however large the file: one
    per non-blank line of plain text, or one per row of a csv, json/jsonl or parquet file's text column
    (--text-column, default 'text'). The file is checked before the first text; a row without text
    there raises a CorpusError naming the row when it is reached."""
    path = local_or_example("--file", str(path))
    check_not_device("--file", path)
    if not path.is_file():
        raise CorpusError(f"--file {path} does not exist; give a text, csv, jsonl or parquet file")
    builder = BUILDERS.get(path.suffix.lower(), "text")
    if builder != "parquet":
        _check_encoding(encoding)
        _check_text_file(path, encoding)
        # a byte-order mark is not text: utf-8-sig drops one at the start and reads the rest as utf-8
        encoding = "utf-8-sig" if codecs.lookup(encoding).name == "utf-8" else encoding
    if builder == "text":
        return _text_lines(path, encoding)
    return _column_texts(path, _file_rows(path, builder, encoding), text_column or "text")


def _text_lines(path: Path, encoding: str) -> Iterator[str]:
    with open(path, encoding=encoding) as file:
        for line in file:
            if line.strip():
                yield line.rstrip("\r\n")


def _file_rows(path: Path, builder: str, encoding: str) -> Iterator[dict]:
    """The rows of a csv, json/jsonl or parquet file as dicts, one at a time."""
    if builder == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            for batch in pq.ParquetFile(path).iter_batches(batch_size=1000):
                yield from batch.to_pylist()
        except (pa.ArrowException, OSError) as error:
            raise CorpusError(f"could not read {path} as parquet ({_first_line(error)}); check the file's format")
        return
    with open(path, encoding=encoding, newline="" if builder == "csv" else None) as file:
        if builder == "csv":
            csv.field_size_limit(max(csv.field_size_limit(), 1 << 30))  # a long review is still one field
            reader = csv.DictReader(file)
            try:
                yield from reader
            except csv.Error as error:
                raise CorpusError(f"{path} line {reader.line_num} is not valid csv ({error}); check the file's format")
            return
        if file.read(64).lstrip()[:1] == "[":  # one JSON array: it can only be read whole
            file.seek(0)
            yield from _parse_json(file.read(), path, "")
            return
        file.seek(0)
        for number, line in enumerate(file, 1):
            if line.strip():
                yield _parse_json(line, path, f" line {number}")


def _parse_json(text: str, path: Path, where: str) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise CorpusError(f"{path}{where} is not valid JSON ({error.msg} at column {error.colno}); give one JSON "
                          "object per line") from None


def _column_texts(path: Path, rows: Iterator[object], column: str) -> Iterator[str]:
    """Each row's text in `column`, checked to be a string."""
    for number, row in enumerate(rows, 1):
        if not isinstance(row, dict):
            raise CorpusError(f"row {number} of {path} is a {type(row).__name__}, not an object with a "
                              f"{column!r} field; give one object per row")
        if number == 1 and column not in row:
            names = ", ".join(str(name) for name in row if name is not None)
            raise CorpusError(f"{path} has no text column {column!r} (columns: {names}); pick one with --text-column")
        text = row.get(column)
        if not isinstance(text, str):
            held = "nothing" if text is None else f"{type(text).__name__} {text!r:.40}"
            raise CorpusError(f"row {number} of {path} holds {held} in column {column!r}, not text; give every "
                              "row a text, or pick another column with --text-column")
        yield text
