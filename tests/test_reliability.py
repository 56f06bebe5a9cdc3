"""Reliability: one writer per run folder, a full disk while writing a checkpoint or the token cache,
kill -9 at random moments (a short soak), and streaming with bounded memory."""

import dataclasses
import errno
import hashlib
import io
import itertools
import json
import os
import signal
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest
import torch

from textgen import cli
from textgen.data import batches
from textgen.nn import checkpoint
from textgen.nn.checkpoint import load_checkpoint, load_classifier
from textgen.classify.predict import predict_stream
from textgen.config import ModelConfig, SampleConfig
from textgen.data.corpus import read_texts
from textgen.errors import CorpusError, TextgenError
from textgen.nn.model import LanguageModel
from textgen.generate.sampling import _History, stream
from textgen.data.tokenizer import CharTokenizer
from textgen.training.distributed import Distributed
from textgen.training.trainer import run_folder_lock

REPO = Path(__file__).resolve().parent.parent


def train_args(corpus, out, *extra):
    return ["train", "--corpus", str(corpus), "--preset", "tiny", "--hidden", "16", "--embed", "16",
            "--batch-size", "4", "--seq-len", "16", "--eval-interval", "100", "--out", str(out),
            "--device", "cpu", "--precision", "fp32", *extra]


def error_line(err: str) -> str:
    """The one error line of a failed command's stderr; fails unless there is exactly one, and no traceback."""
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("textgen: error:")]
    assert len(lines) == 1, err
    assert err.rstrip("\n").endswith(lines[0]), "the error is the last thing printed, on one line"
    return lines[0]


def full_disk(room: int):
    """An `open` whose temporary files take `room` bytes in all, then fail as a full disk does."""
    real_open = open

    class FullFile(io.FileIO):
        def write(self, data):
            nonlocal room
            if len(data) > room:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            room -= len(data)
            return super().write(data)

    def fake_open(path, mode="r", *args, **kwargs):
        if str(path).endswith(".tmp") and "w" in mode:
            return FullFile(path, "wb")
        return real_open(path, mode, *args, **kwargs)

    return fake_open


@pytest.fixture(autouse=True)
def token_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TEXTGEN_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


# --- one writer per run folder ----------------------------------------------------------------

def test_a_train_into_a_folder_in_use_refuses_in_one_line_and_touches_nothing(corpus, tmp_path, capsys):
    run = tmp_path / "run"
    with run_folder_lock(run, Distributed()):  # as a live run holds it
        assert cli.main(train_args(corpus, run, "--max-steps", "2")) == 1
        line = error_line(capsys.readouterr().err)
        assert line == (f"textgen: error: run folder {run} is in use by another textgen train that is still "
                        f"running; wait for it to finish (or stop it), or choose another --out")
        assert list(run.iterdir()) == []
    assert cli.main(train_args(corpus, run, "--max-steps", "2")) == 0


@dataclasses.dataclass
class SecondRank(Distributed):
    """Rank 1 of a two-process job, told by rank 0 whether it holds the folder."""

    rank0_holds_it: bool = True

    def gather(self, value):
        return [self.rank0_holds_it, value]


def test_under_ddp_only_rank_0_locks_and_every_rank_learns_a_refusal(tmp_path):
    run = tmp_path / "run"
    with run_folder_lock(run, Distributed()):
        with run_folder_lock(run, SecondRank(rank=1, world_size=2, rank0_holds_it=True)):
            pass  # rank 1 takes no lock of its own, so it does not fight rank 0 for it
        with pytest.raises(TextgenError, match="is in use by another textgen train"):
            with run_folder_lock(run, SecondRank(rank=1, world_size=2, rank0_holds_it=False)):
                pass


@pytest.mark.slow
def test_a_live_run_blocks_its_folder_and_a_killed_one_does_not(corpus, tmp_path, capsys, token_cache):
    run = tmp_path / "run"
    live = subprocess.Popen([sys.executable, "-m", "textgen", *train_args(corpus, run, "--max-steps", "100000",
                                                                          "--checkpoint-interval", "1")],
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not (run / "last.pt").exists():
            assert live.poll() is None and time.monotonic() < deadline, "the live run did not start training"
            time.sleep(0.1)
        for extra in (["--resume"], ["--overwrite"]):  # without either, a folder holding a run is refused
            assert cli.main(train_args(corpus, run, "--max-steps", "3", *extra)) == 1
            assert "is in use by another textgen train" in error_line(capsys.readouterr().err)
        assert live.poll() is None, "the refused runs left the live one alone"
    finally:
        os.killpg(live.pid, signal.SIGKILL)
        live.wait()
    step = load_checkpoint(run / "last.pt")["step"]
    assert cli.main(train_args(corpus, run, "--resume", "--max-steps", str(step + 2))) == 0
    assert load_checkpoint(run / "last.pt")["step"] == step + 2


# --- a full disk --------------------------------------------------------------------------------

def test_a_full_disk_during_a_checkpoint_keeps_the_previous_one_and_says_so_in_one_line(
        corpus, tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    assert cli.main(train_args(corpus, run, "--max-steps", "4", "--checkpoint-interval", "2")) == 0
    before = load_checkpoint(run / "last.pt")
    capsys.readouterr()
    with monkeypatch.context() as patch:
        patch.setattr(checkpoint, "open", full_disk(room=2000), raising=False)
        assert cli.main(train_args(corpus, run, "--resume", "--max-steps", "8")) == 1
    assert error_line(capsys.readouterr().err) == (
        f"textgen: error: could not write checkpoint {run / 'last.pt'}: the disk is full; the previous last.pt "
        f"is intact; free space or choose another --out")
    after = load_checkpoint(run / "last.pt")
    assert after["step"] == 4 and all(torch.equal(before["model"][k], after["model"][k]) for k in before["model"])
    assert not list(run.glob("*.tmp"))
    assert cli.main(train_args(corpus, run, "--resume", "--max-steps", "8")) == 0
    assert load_checkpoint(run / "last.pt")["step"] == 8


def test_a_full_disk_during_the_token_cache_write_leaves_no_file_and_says_so_in_one_line(
        corpus, tmp_path, capsys, monkeypatch, token_cache):
    assert cli.main(train_args(corpus, tmp_path / "first", "--max-steps", "1")) == 0
    cached = {path.name: path.read_bytes() for path in token_cache.iterdir()}
    other = tmp_path / "other.txt"
    other.write_text(corpus.read_text().upper())
    capsys.readouterr()
    with monkeypatch.context() as patch:
        patch.setattr(batches, "open", full_disk(room=100), raising=False)
        assert cli.main(train_args(other, tmp_path / "second", "--max-steps", "1")) == 1
    line = error_line(capsys.readouterr().err)
    assert line.startswith(f"textgen: error: could not write the token cache {token_cache}{os.sep}")
    assert line.endswith(": the disk is full; free space or point TEXTGEN_CACHE at another disk")
    assert {path.name: path.read_bytes() for path in token_cache.iterdir()} == cached
    assert cli.main(train_args(other, tmp_path / "second", "--max-steps", "1")) == 0
    assert len(list(token_cache.iterdir())) == 2 * len(cached)


def test_a_temporary_cache_file_of_a_killed_writer_is_swept_and_a_live_ones_is_not(corpus, tmp_path, token_cache):
    import fcntl

    assert cli.main(train_args(corpus, tmp_path / "first", "--max-steps", "1")) == 0
    done = sorted(token_cache.iterdir())
    for path in done:
        path.unlink()
    dead, live = (token_cache / f"{done[0].name}.{pid}.tmp" for pid in (1, 2))
    dead.write_bytes(b"half written")
    live.write_bytes(b"being written")
    with open(live, "rb") as writer:
        fcntl.flock(writer, fcntl.LOCK_EX)
        assert cli.main(train_args(corpus, tmp_path / "again", "--max-steps", "1")) == 0
    assert not dead.exists() and live.exists()
    assert sorted(token_cache.glob("*.uint8")) == done


# --- kill -9 at random moments ----------------------------------------------------------------

@pytest.mark.slow
def test_a_short_soak_of_kills_loses_nothing_and_ends_with_the_uninterrupted_weights(tmp_path):
    result = subprocess.run([sys.executable, str(REPO / "tests" / "soak.py"), "--kills", "2", "--max-steps", "16",
                             "--eval-interval", "8", "--corpus-chars", "100000", "--keep", str(tmp_path / "soak")],
                            capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    report = json.loads(result.stdout)
    assert result.returncode == 0, report
    assert report["kills"] == 2 and report["corrupt_files_found"] == 0
    assert report["final_weights_identical"] and report["best_weights_identical"]


# --- bounded memory ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    folder = tmp_path_factory.mktemp("classifier")
    rows = [f"{word} film {index},{label}" for index in range(40)
            for word, label in (("good", "pos"), ("bad", "neg"))]
    (folder / "reviews.csv").write_text("text,label\n" + "\n".join(rows) + "\n")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TEXTGEN_CACHE", str(folder / "cache"))
        assert cli.main(["train", "--task", "classify", "--corpus", str(folder / "reviews.csv"), "--out",
                         str(folder / "run"), "--layers", "1", "--hidden", "8", "--embed", "8", "--batch-size", "8",
                         "--max-steps", "2", "--device", "cpu", "--precision", "fp32"]) == 0
    return folder / "run"


def test_texts_are_read_lazily_and_a_bad_row_is_named_when_it_comes(write_file):
    texts = read_texts(write_file("rows.csv", "label,text\n1,fine\n0,also fine\n1\n0,never read\n"))
    assert list(itertools.islice(texts, 2)) == ["fine", "also fine"]
    with pytest.raises(CorpusError, match=r"row 3 of .*rows.csv holds nothing in column 'text', not text"):
        next(texts)
    texts = read_texts(write_file("rows.jsonl", '{"text": "one"}\n{"text": 2}\n'))
    assert next(texts) == "one"
    with pytest.raises(CorpusError, match="row 2 of .* holds int 2 in column 'text', not text"):
        next(texts)
    assert list(read_texts(write_file("bom.txt", "\ufefffirst\r\n\r\nsecond\rthird"))) == ["first", "second", "third"]


def test_reading_a_big_file_of_texts_holds_only_a_line_at_a_time(tmp_path):
    path = tmp_path / "big.txt"
    path.write_text("".join(f"text number {index} of many\n" for index in range(200_000)))  # 5 MB
    texts = read_texts(path)  # checks the whole file's encoding first, a megabyte at a time
    tracemalloc.start()
    count = sum(1 for _ in texts)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert count == 200_000 and peak < 1_000_000


def test_predictions_stream_group_by_group_without_reading_ahead(classifier):
    model, tokenizer, _ = load_classifier(classifier)
    pulled = 0

    def texts():
        nonlocal pulled
        for index in itertools.count():
            pulled += 1
            yield "" if index == 40 else f"good film {index}"

    groups = predict_stream(model, tokenizer, texts(), torch.device("cpu"), batch_size=2, group_batches=16)
    first, probabilities = next(groups)
    assert len(first) == 32 and probabilities.shape == (32, 2) and pulled == 32
    with pytest.raises(TextgenError, match="text 41 is empty"):
        next(groups)


def test_classify_file_prints_every_answer_in_order_as_it_streams(classifier, tmp_path, capsys):
    path = tmp_path / "texts.txt"
    path.write_text("".join(f"good film {index}\n" for index in range(100)))
    capsys.readouterr()
    assert cli.main(["classify", "--model", str(classifier), "--file", str(path), "--batch-size", "2", "--json"]) == 0
    answers = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [answer["text"] for answer in answers] == [f"good film {index}" for index in range(100)]
    assert cli.main(["classify", "--model", str(classifier), "--file", str(path), "--batch-size", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["label", "probability", "text"] and len(lines) == 101
    assert [line.split()[-1] for line in lines[1:]] == [str(index) for index in range(100)]


def test_the_sampling_history_keeps_only_the_window_the_controls_read():
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 30, (3, 1000), generator=generator)
    bounded = _History([5, 6, 7], 3, keep=8, max_tokens=1000, device=torch.device("cpu"))
    whole = _History([5, 6, 7], 3, keep=None, max_tokens=1000, device=torch.device("cpu"))
    full = torch.cat([torch.tensor([[5, 6, 7]] * 3), tokens], 1)
    for step in range(1000):
        bounded.append(tokens[:, step])
        whole.append(tokens[:, step])
        assert torch.equal(bounded.ids[:, :bounded.filled][:, -8:], full[:, :step + 4][:, -8:])
        assert bounded.ids.size(1) == 16
    assert torch.equal(whole.ids[:, :whole.filled], full)


def test_a_long_sample_streams_in_flat_memory_and_the_same_text():
    tokenizer = CharTokenizer.from_texts(["the cat sat on the mat.\n"])
    torch.manual_seed(0)
    model = LanguageModel(ModelConfig(num_layers=1, hidden_size=8, embed_size=8, vocab_size=tokenizer.vocab_size,
                                      dropout=0.0, output_dropout=0.0)).eval()

    def sample(length, keep_text):
        """Peak Python memory while streaming, the streamed text's digest and length, the finished sample."""
        config = SampleConfig(length=length, seed=0, repetition_penalty=1.3, repetition_window=16, stop=("zzz",))
        digest, chars = hashlib.sha256(), 0
        tracemalloc.start()
        for chunk in stream(model, tokenizer, "the", config, keep_text=keep_text):
            digest.update(chunk.text.encode())
            chars += len(chunk.text)
            finished = chunk.sample
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return peak, digest.hexdigest(), chars, finished

    short_peak, *_ = sample(300, keep_text=False)
    long_peak, digest, chars, finished = sample(2500, keep_text=False)
    assert chars == 2500 and finished.text is None and finished.stop_reason == "length"
    assert long_peak < short_peak + 8_000
    _, kept_digest, _, kept = sample(2500, keep_text=True)
    assert kept_digest == digest == hashlib.sha256(kept.text.encode()).hexdigest()
