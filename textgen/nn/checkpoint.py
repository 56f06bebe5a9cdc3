"""Self-describing checkpoints: plain data only, written atomically, loaded with weights_only=True."""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import importlib.resources
import logging
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from textgen.config import ClassifierConfig, ModelConfig, from_dict
from textgen.errors import CheckpointError, TextgenError
from textgen.nn.model import Classifier, LanguageModel, ShapesOnly
from textgen.data.tokenizer import Tokenizer, tokenizer_from_data

log = logging.getLogger("textgen")

FORMAT = "textgen-checkpoint"
VERSION = 1
KINDS = ("language_model", "classifier")
# Bounds a checkpoint's config must keep before a model of its shape is built (a hand-made file
# could ask for gigabytes): far above any model textgen trains.
def checksum(payload: dict[str, Any]) -> str:
    """A SHA-256 of everything in `payload` but its own "checksum": keys, values and tensor bytes."""
    hasher = hashlib.sha256()

    def add(value: Any) -> None:
        if isinstance(value, torch.Tensor):
            hasher.update(f"tensor {value.dtype} {tuple(value.shape)};".encode())
            hasher.update(value.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
        elif isinstance(value, dict):
            items = [(key, item) for key, item in value.items() if key != "checksum"]
            hasher.update(f"dict {len(items)};".encode())
            for key, item in items:
                hasher.update(f"{key!r}:".encode())
                add(item)
        elif isinstance(value, (list, tuple)):
            hasher.update(f"{type(value).__name__} {len(value)};".encode())
            for item in value:
                add(item)
        else:
            hasher.update(f"{value!r};".encode())

    add(payload)
    return "sha256:" + hasher.hexdigest()


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Write `payload` to `path` so that a crash or full disk leaves the previous file intact."""
    path = Path(path)
    temporary = path.with_name(path.name + ".tmp")
    try:
        payload = {"format": FORMAT, "version": VERSION, **payload}
        payload["checksum"] = checksum(payload)
        with open(temporary, "wb") as file:
            torch.save(payload, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    except (OSError, RuntimeError) as raised:
        temporary.unlink(missing_ok=True)
        error = _failed_write(raised)
        if error is None:
            raise
        reason = "the disk is full" if error.errno == errno.ENOSPC else error.strerror or str(error)
        kept = f"; the previous {path.name} is intact" if path.exists() else ""
        raise CheckpointError(f"could not write checkpoint {path}: {reason}{kept}; free space or "
                              f"choose another --out") from error


def bundled_models() -> dict[str, Path]:
    """The models that ship with textgen, by name (e.g. 'shakespeare'), and their weight files."""
    folder = importlib.resources.files("textgen.pretrained")
    return {Path(item.name).stem: Path(str(item)) for item in sorted(folder.iterdir(), key=lambda i: i.name)
            if item.name.endswith(".pt")}


def _failed_write(error: BaseException | None) -> OSError | None:
    """The OSError behind `error`, if any: torch's zip writer reports a failed write (a full disk)
    as a RuntimeError of its own, raised while the OSError is being handled."""
    while error is not None and not isinstance(error, OSError):
        error = error.__cause__ or error.__context__
    return error


def resolve_checkpoint_path(model: str | Path) -> Path:
    """The .pt file meant by `--model`: a file as given, a run folder's best.pt (else last.pt), or
    a bundled model's name; a path that exists wins over a bundled name."""
    path = Path(model)
    if path.is_dir():
        for name in ("best.pt", "last.pt"):
            if (path / name).is_file():
                return path / name
        raise CheckpointError(f"run folder {path} holds no best.pt or last.pt; train into it first "
                              f"or pass a .pt file to --model")
    if not path.is_file():
        bundled = bundled_models()
        if str(model) in bundled:
            return bundled[str(model)]
        names = ", ".join(bundled) or "none installed"
        raise CheckpointError(f"--model {path} does not exist; pass a run folder, a .pt checkpoint or a "
                              f"bundled model name ({names})")
    return path


def describe_checkpoint(model: str | Path) -> dict[str, Any]:
    """What `textgen models` shows of a checkpoint: kind, tokenizer, parameters, corpus, validation."""
    payload = load_checkpoint(model)
    check_schema(payload, Path(payload["path"]))
    seen, parameters = set(), 0
    classes = len(payload["classifier_config"]["label_names"]) if payload["kind"] == "classifier" else 0
    for tensor in _absolute_ngrams(payload["model"], classes).values():
        if tensor.data_ptr() not in seen:  # tied weights count once
            seen.add(tensor.data_ptr())
            parameters += tensor.numel()
    metrics = payload.get("best_metrics") or payload.get("metrics") or {}
    if "accuracy" in metrics:
        validation = f"{metrics['accuracy']:.1%} accuracy"
    elif "bits_per_char" in metrics:
        validation = f"{metrics['bits_per_char']:.3f} bits/char"
    else:
        validation = "not measured"
    return {"kind": payload["kind"].replace("_", " "), "parameters": parameters,
            "tokenizer": f"{payload['tokenizer']['kind']} {payload['model_config']['vocab_size']}",
            "corpus": payload.get("configs", {}).get("data", {}).get("corpus", "?"), "validation": validation}


def export_weights(model: str | Path, out: str | Path, dtype: torch.dtype = torch.float16) -> Path:
    """Write the checkpoint `model` as a small file for sharing: weights cast to `dtype`, no optimizer
    or resume state; it loads like any checkpoint (weights are cast back to float32 on load)."""
    payload = load_checkpoint(model)
    keep = ("kind", "configs", "model_config", "classifier_config", "tokenizer", "step", "metrics",
            "best_metrics")
    small = {key: payload[key] for key in keep if key in payload}
    cast: dict[int, torch.Tensor] = {}  # tied weights (embedding = output) stay one tensor
    small["model"] = {name: cast.setdefault(tensor.data_ptr(), tensor.to(dtype)) if tensor.is_floating_point()
                      else tensor for name, tensor in _relative_ngrams(payload["model"]).items()}
    save_checkpoint(out, small)
    return Path(out)


# A softmax does not see a shift that every class shares, so the n-gram table can drop its first
# column (each row less its first entry) and lose nothing: it halves a two-class table.
NGRAM_TABLE = "ngrams.weight"


def _relative_ngrams(state: dict[str, Any]) -> dict[str, Any]:
    """`state` with its n-gram table (if any) stored relative to the first class."""
    table = state.get(NGRAM_TABLE)
    if not isinstance(table, torch.Tensor) or table.dim() != 2 or table.shape[1] < 2:
        return state
    return {**state, NGRAM_TABLE: table[:, 1:] - table[:, :1]}


def _absolute_ngrams(state: dict[str, Any], classes: int) -> dict[str, Any]:
    """`state` with a relative n-gram table (one column fewer than `classes`) given its first column back."""
    table = state.get(NGRAM_TABLE)
    if not isinstance(table, torch.Tensor) or table.dim() != 2 or table.shape[1] != classes - 1:
        return state
    return {**state, NGRAM_TABLE: torch.cat([torch.zeros(len(table), 1, dtype=table.dtype), table], dim=1)}


def load_checkpoint(model: str | Path, kind: str | None = None) -> dict[str, Any]:
    """The checkpoint's plain-data payload; `kind` ('language_model'/'classifier') is enforced."""
    path = resolve_checkpoint_path(model)
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; torch.load would unpickle anything else
        raise CheckpointError(f"{path} is not a readable checkpoint (corrupt, truncated, or not one at all: it "
                              f"is not the zip archive torch.save writes); use another file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError, IndexError,
            KeyError) as error:  # a corrupt pickle inside the archive trips the unpickler in many ways
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"{path} is not a readable checkpoint (corrupt, truncated, or one that "
                              f"would run code: {first_line[:160]}); use another file") from error
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a textgen checkpoint (it has no textgen format marker); "
                              f"pass a checkpoint written by `textgen train`")
    if payload.get("version", 0) > VERSION:
        raise CheckpointError(f"{path} was written by a newer textgen (format {payload['version']}, "
                              f"this one reads {VERSION}); upgrade textgen")
    if "checksum" not in payload:
        log.debug("%s carries no checksum (written before textgen added them); loaded unchecked", path)
    elif payload["checksum"] != checksum(payload):
        raise CheckpointError(f"{path} is damaged: its contents no longer match the checksum written with it "
                              f"(a bad disk, copy or edit); use another checkpoint (a run's best.pt) or retrain")
    if kind is not None and payload.get("kind") != kind:
        wanted = {"language_model": "a language model (textgen train --task lm)",
                  "classifier": "a classifier (textgen train --task classify)"}[kind]
        raise CheckpointError(f"{path} holds a {payload.get('kind', 'unknown').replace('_', ' ')}, "
                              f"but this command needs {wanted}")
    payload["path"] = str(path)
    return payload


def check_schema(payload: dict[str, Any], path: Path) -> None:
    """Refuse a checkpoint whose keys, types, sizes or tensor shapes are not those its config says,
    before any model is built from it."""
    def refuse(what: str) -> CheckpointError:
        return CheckpointError(f"{path} is not a usable textgen checkpoint: {what}; use a checkpoint written by "
                               f"`textgen train`")

    if payload.get("kind") not in KINDS:
        raise refuse(f"its kind {payload.get('kind')!r} is not one of {', '.join(KINDS)}")
    needed = {"model_config": dict, "tokenizer": dict, "model": dict,
              **({"classifier_config": dict} if payload["kind"] == "classifier" else {})}
    for key, wanted in needed.items():
        if not isinstance(payload.get(key), wanted):
            raise refuse(f"{key} is {type(payload.get(key)).__name__ if key in payload else 'missing'}, "
                         f"not a {wanted.__name__}")
    try:
        model_config = from_dict(ModelConfig, payload["model_config"])
        classifier_config = (from_dict(ClassifierConfig, payload["classifier_config"])
                             if payload["kind"] == "classifier" else None)
        tokenizer = tokenizer_from_data(payload["tokenizer"])
    except (TypeError, ValueError, KeyError, AttributeError, TextgenError) as error:
        if isinstance(error, CheckpointError):
            raise
        raise refuse(f"its configs or tokenizer do not read back ({str(error)[:120] or type(error).__name__})") from None
    if tokenizer.vocab_size != model_config.vocab_size:
        raise refuse(f"its tokenizer has {tokenizer.vocab_size} tokens and its model {model_config.vocab_size}")
    with torch.device("meta"), ShapesOnly():  # the shapes the config means, without allocating them
        built = Classifier(model_config, classifier_config) if classifier_config else LanguageModel(model_config)
    expected = {name: tuple(tensor.shape) for name, tensor in built.state_dict().items()}
    classes = len(classifier_config.label_names) if classifier_config else 0
    found = {name: tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor).__name__
             for name, tensor in _absolute_ngrams(payload["model"], classes).items()}
    if found != expected:
        wrong = sorted(name for name in expected.keys() | found.keys() if found.get(name) != expected.get(name))
        shown = "; ".join(f"{name} {found.get(name, 'missing')} vs {expected.get(name, 'unexpected')}"
                          for name in wrong[:2])
        raise refuse(f"its weights do not fit its config ({shown}{' ...' if len(wrong) > 2 else ''})")


def load_model(model: str | Path, device: str | torch.device = "cpu", kind: str | None = None,
               max_len: int | None = None, long_text: str | None = None, features: str | None = None
               ) -> tuple[LanguageModel | Classifier, Tokenizer, dict[str, Any]]:
    """The language model or classifier a checkpoint holds (in eval mode, on `device`; `kind` is
    enforced), its tokenizer, and the checkpoint payload. `max_len` and `long_text` change how a
    classifier reads long texts, `features` which of its parts it labels with (default: as it was
    trained)."""
    payload = load_checkpoint(model, kind=kind)
    check_schema(payload, Path(payload["path"]))
    model_config = from_dict(ModelConfig, payload["model_config"])
    if payload["kind"] == "classifier":
        config = from_dict(ClassifierConfig, payload["classifier_config"])
        config = dataclasses.replace(config, max_len=max_len or config.max_len, long_text=long_text or config.long_text,
                                     features=features or config.features)
        built = Classifier(model_config, config)
        built.load_state_dict(_absolute_ngrams(payload["model"], len(config.label_names)))
    else:
        built = LanguageModel(model_config)
        built.load_state_dict(payload["model"])
    return built.to(device).eval(), tokenizer_from_data(payload["tokenizer"]), payload


def load_language_model(model: str | Path, device: str | torch.device = "cpu"
                        ) -> tuple[LanguageModel, Tokenizer, dict[str, Any]]:
    """The language model (in eval mode, on `device`), its tokenizer, and the checkpoint payload."""
    return load_model(model, device, kind="language_model")


def load_classifier(model: str | Path, device: str | torch.device = "cpu", max_len: int | None = None,
                    long_text: str | None = None, features: str | None = None
                    ) -> tuple[Classifier, Tokenizer, dict[str, Any]]:
    """The classifier (in eval mode, on `device`; reading long texts and choosing features as
    `load_model` says), its tokenizer, and the checkpoint payload."""
    return load_model(model, device, "classifier", max_len, long_text, features)
