"""Self-describing checkpoints: plain data only, written atomically, loaded with weights_only=True."""

from __future__ import annotations

import dataclasses
import errno
import importlib.resources
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from textgen.config import ClassifierConfig, ModelConfig, from_dict
from textgen.errors import CheckpointError
from textgen.model import Classifier, LanguageModel
from textgen.tokenizer import Tokenizer, tokenizer_from_data

FORMAT = "textgen-checkpoint"
VERSION = 1
KINDS = ("language_model", "classifier")


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Write `payload` to `path` so that a crash or full disk leaves the previous file intact."""
    path = Path(path)
    temporary = path.with_name(path.name + ".tmp")
    try:
        with open(temporary, "wb") as file:
            torch.save({"format": FORMAT, "version": VERSION, **payload}, file)
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
    seen, parameters = set(), 0
    for tensor in payload["model"].values():
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
                      else tensor for name, tensor in payload["model"].items()}
    save_checkpoint(out, small)
    return Path(out)


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
    if kind is not None and payload.get("kind") != kind:
        wanted = {"language_model": "a language model (textgen train --task lm)",
                  "classifier": "a classifier (textgen train --task classify)"}[kind]
        raise CheckpointError(f"{path} holds a {payload.get('kind', 'unknown').replace('_', ' ')}, "
                              f"but this command needs {wanted}")
    payload["path"] = str(path)
    return payload


def load_model(model: str | Path, device: str | torch.device = "cpu", kind: str | None = None,
               max_len: int | None = None, long_text: str | None = None
               ) -> tuple[LanguageModel | Classifier, Tokenizer, dict[str, Any]]:
    """The language model or classifier a checkpoint holds (in eval mode, on `device`; `kind` is
    enforced), its tokenizer, and the checkpoint payload. `max_len` and `long_text` change how a
    classifier reads long texts (default: as it was trained)."""
    payload = load_checkpoint(model, kind=kind)
    model_config = from_dict(ModelConfig, payload["model_config"])
    if payload["kind"] == "classifier":
        config = from_dict(ClassifierConfig, payload["classifier_config"])
        config = dataclasses.replace(config, max_len=max_len or config.max_len, long_text=long_text or config.long_text)
        built = Classifier(model_config, config)
    else:
        built = LanguageModel(model_config)
    built.load_state_dict(payload["model"])
    return built.to(device).eval(), tokenizer_from_data(payload["tokenizer"]), payload


def load_language_model(model: str | Path, device: str | torch.device = "cpu"
                        ) -> tuple[LanguageModel, Tokenizer, dict[str, Any]]:
    """The language model (in eval mode, on `device`), its tokenizer, and the checkpoint payload."""
    return load_model(model, device, kind="language_model")


def load_classifier(model: str | Path, device: str | torch.device = "cpu", max_len: int | None = None,
                    long_text: str | None = None) -> tuple[Classifier, Tokenizer, dict[str, Any]]:
    """The classifier (in eval mode, on `device`; reading long texts as `load_model` says), its
    tokenizer, and the checkpoint payload."""
    return load_model(model, device, "classifier", max_len, long_text)
