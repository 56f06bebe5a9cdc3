import errno
import os

import pytest
import torch

from textgen.nn.checkpoint import load_checkpoint, resolve_checkpoint_path, save_checkpoint
from textgen.errors import CheckpointError


def test_saved_checkpoint_loads_back_with_weights_only(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"kind": "language_model", "model": {"w": torch.ones(2)}, "tokenizer": {"b": b"\x00"}})
    payload = load_checkpoint(path, kind="language_model")
    assert payload["model"]["w"].tolist() == [1.0, 1.0] and payload["tokenizer"]["b"] == b"\x00"
    assert not (tmp_path / "last.pt.tmp").exists()


def test_a_failed_write_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"kind": "language_model", "step": 1})

    def disk_full(obj, file):
        file.write(b"partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(CheckpointError, match="the disk is full; the previous last.pt is intact"):
        save_checkpoint(path, {"kind": "language_model", "step": 2})
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 1
    assert not (tmp_path / "last.pt.tmp").exists()


def test_a_truncated_checkpoint_gives_a_clear_error(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"kind": "language_model", "model": {"w": torch.ones(1000)}})
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(CheckpointError, match="is not a readable checkpoint"):
        load_checkpoint(path)


class Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    torch.save({"format": "textgen-checkpoint", "x": Payload()}, path)
    with pytest.raises(CheckpointError, match="is not a readable checkpoint"):
        load_checkpoint(path)
    assert "this must never run" not in capsys.readouterr().out


def test_a_foreign_checkpoint_is_named_as_such(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"state_dict": {"w": torch.ones(1)}}, path)
    with pytest.raises(CheckpointError, match="is not a textgen checkpoint"):
        load_checkpoint(path)


def test_a_checkpoint_of_the_wrong_kind_is_refused(tmp_path):
    path = tmp_path / "clf.pt"
    save_checkpoint(path, {"kind": "classifier"})
    with pytest.raises(CheckpointError, match="holds a classifier, but this command needs a language model"):
        load_checkpoint(path, kind="language_model")


def test_a_run_folder_means_its_best_checkpoint(tmp_path):
    save_checkpoint(tmp_path / "last.pt", {"kind": "language_model"})
    assert resolve_checkpoint_path(tmp_path) == tmp_path / "last.pt"
    save_checkpoint(tmp_path / "best.pt", {"kind": "language_model"})
    assert resolve_checkpoint_path(tmp_path) == tmp_path / "best.pt"
    with pytest.raises(CheckpointError, match="does not exist"):
        resolve_checkpoint_path(tmp_path / "missing.pt")
