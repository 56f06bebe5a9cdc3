"""Corpora as `datasets` splits: named corpora, local files and folders, Hugging Face Hub ids.

`load_corpus` always returns a `train` and a `validation` split (carving one where the source has
none); `split_texts` turns a split back into the text stream a language model reads.
"""

from __future__ import annotations

import codecs
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.compute as pc

from textgen.config import DataConfig
from textgen.errors import ConfigError, CorpusError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CorpusInfo:
    """Where a named corpus lives on the Hub and which columns hold its text and labels."""

    name: str
    hub_id: str
    revision: str | None
    text_column: str
    label_column: str | None
    label_names: tuple[str, ...] | None
    splits: tuple[str, ...]


NAMED_CORPORA: dict[str, CorpusInfo] = {
    info.name: info
    for info in (
        CorpusInfo("tiny_shakespeare", "karpathy/tiny_shakespeare", "refs/convert/parquet", "text", None, None,
                   ("train", "validation", "test")),
        CorpusInfo("rotten_tomatoes", "cornell-movie-review-data/rotten_tomatoes", None, "text", "label",
                   ("neg", "pos"), ("train", "validation", "test")),
        CorpusInfo("sst2", "stanfordnlp/sst2", None, "sentence", "label", ("negative", "positive"),
                   ("train", "validation", "test")),
        CorpusInfo("imdb", "stanfordnlp/imdb", None, "text", "label", ("neg", "pos"), ("train", "test")),
    )
}

# File extension -> datasets builder; anything else given as a single file is read as plain text.
BUILDERS = {".txt": "text", ".csv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}
SPLIT_ALIASES = {"train": "train", "validation": "validation", "valid": "validation", "dev": "validation",
                 "test": "test"}
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


def resolve_data_dir(data_dir: str | None) -> Path:
    """The folder holding named corpora: `data_dir`, else $TEXTGEN_DATA, else ./corpora."""
    return Path(data_dir or os.environ.get("TEXTGEN_DATA") or "corpora").expanduser()


def load_corpus(config: DataConfig, task: str = "lm") -> Corpus:
    """The corpus `config.corpus` names, with `train` and `validation` splits ready for `task` ("lm" or "classify")."""
    spec = config.corpus
    info = NAMED_CORPORA.get(spec)
    path = Path(spec).expanduser()
    if path.exists():
        splits, line_rows = _load_local(path, config.encoding)
        source = f"local {'folder' if path.is_dir() else 'file'} {path.resolve()}"
    elif info is not None:
        folder = resolve_data_dir(config.data_dir) / spec
        if folder.is_dir():
            splits, line_rows = _load_local(folder, config.encoding)
            source = f"local folder {folder.resolve()}"
        else:
            splits, line_rows = _load_hub(info.hub_id, info.revision, tried=folder), False
            source = f"hub {info.hub_id}@{info.revision or 'main'}"
    elif _HUB_ID.match(spec) and not spec.startswith(".") and path.suffix not in BUILDERS:
        splits, line_rows = _load_hub(spec, None, tried=None), False
        source = f"hub {spec}"
    elif "/" in spec or os.sep in spec or path.suffix:
        raise CorpusError(f"no file or folder at {spec!r}; check the path, or give a named corpus "
                          "or a Hub id owner/name")
    else:
        known = ", ".join(NAMED_CORPORA)
        raise CorpusError(f"unknown corpus {spec!r}; use one of {known}, a Hugging Face Hub id like owner/name, "
                          "or a path to a local file or folder")

    text_column = _pick_column(splits, _text_candidates(config, info), "text", "--text-column", spec)
    label_column, label_names = None, None
    if task == "classify":
        label_column = _pick_column(splits, (config.label_column or (info and info.label_column) or "label",),
                                    "label", "--label-column", spec)
        splits = _drop_unlabelled_splits(splits, label_column, spec)
        splits, label_names = _encode_labels(splits, label_column, info, spec)
    corpus = Corpus(spec, splits, text_column, label_column, label_names, source, line_rows)
    for split in corpus.splits:
        if not any(piece.strip() for piece in split_texts(corpus, split)):
            raise CorpusError(f"split {split!r} of corpus {spec!r} ({source}) has no text, only whitespace; "
                              "give a corpus with text in it")
    if "validation" not in corpus.splits:
        corpus.splits = _carve_validation(corpus, task, config.split_seed)
    return corpus


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


def _text_candidates(config: DataConfig, info: CorpusInfo | None) -> tuple[str, ...]:
    if config.text_column:
        return (config.text_column,)
    # sst2 calls its text "sentence" on the Hub but "text" in local files
    return tuple(dict.fromkeys((info.text_column if info else "text", "text")))


def _load_local(path: Path, encoding: str) -> tuple[datasets.DatasetDict, bool]:
    """Splits read from a local file or folder, and whether their rows are lines of plain text."""
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise ConfigError(f"--encoding {encoding!r} is not a known text encoding; use e.g. utf-8, latin-1 or cp1252")
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
    try:
        splits = datasets.load_dataset(builder, data_files={split: [str(f) for f in files]
                                                            for split, files in data_files.items()}, **options)
    except (datasets.exceptions.DatasetGenerationError, ValueError) as error:
        raise CorpusError(f"could not read {path} as {builder} ({_first_line(error.__cause__ or error)}); "
                          "check the file's format") from error
    return splits, builder == "text"


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
    else:
        raise CorpusError(f"{folder} has no training file (has {', '.join(sorted(grouped))}); add train.<ext>")
    return grouped


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
            has_text = has_text or bool(text.strip())
            offset += len(chunk)
            if not chunk:
                break
    if not has_text:
        raise CorpusError(f"{file.resolve()} is empty or only whitespace; give a file with text in it")


def _load_hub(hub_id: str, revision: str | None, tried: Path | None) -> datasets.DatasetDict:
    """The Hub dataset's splits, renamed to train/validation/test; a CorpusError saying what was tried if it fails."""
    try:
        loaded = datasets.load_dataset(hub_id, revision=revision)
    except (OSError, ValueError) as error:
        looked = f"no folder {tried} and " if tried else ""
        fix = (f"put its files at {tried}/<split>.<ext> (or point --data-dir or TEXTGEN_DATA at a folder holding "
               f"{tried.name}/)" if tried else "check the id (owner/name) or give a local file or folder")
        raise CorpusError(f"{looked}could not load {hub_id!r} from the Hugging Face Hub ({_first_line(error)}); {fix}, "
                          "or run once online so datasets caches it (HF_HUB_OFFLINE=1 skips the network)") from error
    splits = datasets.DatasetDict({SPLIT_ALIASES[name]: split for name, split in loaded.items()
                                   if name in SPLIT_ALIASES})
    if "train" not in splits:
        raise CorpusError(f"Hub dataset {hub_id!r} has no train split (has {', '.join(loaded)}); use another corpus")
    return splits


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def _pick_column(splits: datasets.DatasetDict, candidates: tuple[str, ...], role: str, flag: str, spec: str) -> str:
    columns = splits["train"].column_names
    for name in candidates:
        if name in columns:
            return name
    raise CorpusError(f"corpus {spec!r} has no {role} column {' or '.join(map(repr, candidates))} "
                      f"(columns: {', '.join(columns)}); pick one with {flag}")


def _missing_labels(split: datasets.Dataset, column: str) -> int:
    """Rows of `split` without a label: nulls, or negative ids (how the Hub marks unlabelled test rows)."""
    values = split.data.column(column)
    missing = values.null_count
    if pa.types.is_integer(values.type):
        missing += pc.sum(pc.less(values, 0)).as_py() or 0
    return missing


def _drop_unlabelled_splits(splits: datasets.DatasetDict, column: str, spec: str) -> datasets.DatasetDict:
    kept = datasets.DatasetDict()
    for name, split in splits.items():
        missing = _missing_labels(split, column)
        if missing == len(split) and name != "train":
            logger.info("dropping split %r of %s: it has no labels", name, spec)
        elif missing:
            raise CorpusError(f"split {name!r} of corpus {spec!r} has {missing} of {len(split)} rows without a label "
                              f"in column {column!r}; label every row or remove the unlabelled ones")
        else:
            kept[name] = split
    return kept


def _encode_labels(splits: datasets.DatasetDict, column: str, info: CorpusInfo | None,
                   spec: str) -> tuple[datasets.DatasetDict, list[str]]:
    """Splits whose label column is a ClassLabel with ids 0..n-1, and the label names by id."""
    feature = splits["train"].features[column]
    if isinstance(feature, datasets.ClassLabel):
        return splits, list(feature.names)
    value_type = splits["train"].data.column(column).type
    if pa.types.is_string(value_type) or pa.types.is_large_string(value_type):
        splits = splits.class_encode_column(column)
        return splits, list(splits["train"].features[column].names)
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


def _carve_validation(corpus: Corpus, task: str, seed: int) -> datasets.DatasetDict:
    """The corpus's splits plus a validation split taken from train."""
    train = corpus.splits["train"]
    splits = datasets.DatasetDict(corpus.splits)
    if task == "classify":
        # stratified so a small or skewed corpus keeps every class in both splits
        parts = train.train_test_split(test_size=0.1, seed=seed, stratify_by_column=corpus.label_column)
        splits["train"], splits["validation"] = parts["train"], parts["test"]
        logger.info("%s has no validation split; carved a stratified 10%% (%d rows, seed %d) from train",
                    corpus.name, len(parts["test"]), seed)
    elif len(train) == 1:
        text = train[0][corpus.text_column]
        cut = int(len(text) * 0.95)
        splits["train"] = datasets.Dataset.from_dict({corpus.text_column: [text[:cut]]})
        splits["validation"] = datasets.Dataset.from_dict({corpus.text_column: [text[cut:]]})
        logger.info("%s has no validation split; carved the last %d of %d characters as validation",
                    corpus.name, len(text) - cut, len(text))
    else:
        # the tail, not a random sample, so validation text never interleaves with training text
        held_out = max(1, round(len(train) * 0.05))
        splits["train"] = train.select(range(len(train) - held_out))
        splits["validation"] = train.select(range(len(train) - held_out, len(train)))
        logger.info("%s has no validation split; carved the last %d of %d rows as validation",
                    corpus.name, held_out, len(train))
    return splits


def read_texts(path: str | Path, text_column: str | None = None, encoding: str = "utf-8") -> list[str]:
    """The texts in a local file: one per line of plain text, or one per row of a csv/json/parquet
    file's text column (--text-column, default 'text')."""
    path = Path(path)
    if not path.is_file():
        raise CorpusError(f"--file {path} does not exist; give a text, csv, jsonl or parquet file")
    splits, line_rows = _load_local(path, encoding)
    if line_rows:
        return [line.rstrip("\r\n") for line in splits["train"]["text"] if line.strip()]
    column = _pick_column(splits, (text_column or "text",), "text", "--text-column", str(path))
    return list(splits["train"][column])
