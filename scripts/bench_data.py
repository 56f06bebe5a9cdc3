"""Benchmark the data pipeline and print JSON.

Measures character encoding speed (against a plain-Python baseline in the same run), SentencePiece
encoding speed through the `datasets.map` path, SentencePiece training time on tiny_shakespeare
(when $TEXTGEN_DATA is set), and peak memory while preparing and iterating a large generated corpus
(each in its own process, so their resident sizes do not mix).

    python scripts/bench_data.py [--size-mb 500] [--num-proc 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from textgen.data.batches import StreamBatches, token_array
from textgen.config import DataConfig
from textgen.data.corpus import load_corpus, split_texts
from textgen.data.tokenizer import CharTokenizer, SentencePieceTokenizer, build_tokenizer

MB = 1_000_000


def generated_text(size_bytes: int, seed: int = 0) -> str:
    """Pseudo-English lines of random words, about `size_bytes` long."""
    rng = np.random.default_rng(seed)
    letters = np.array(list("etaoinshrdlcumwfgypbvkjxqz"))
    words = ["".join(rng.choice(letters, size=n)) for n in rng.integers(1, 10, size=5_000)]
    lines = []
    length = 0
    while length < size_bytes:
        line = " ".join(words[i] for i in rng.zipf(1.3, size=12) % len(words)) + ".\n"
        lines.append(line)
        length += len(line)
    return "".join(lines)


def median_seconds(function, runs: int) -> float:
    """Median wall time of `runs` calls of `function`."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak_rss_mb() -> float:
    """This process's peak resident set size in MB (VmHWM; ru_maxrss would carry the parent's peak over exec)."""
    status = Path("/proc/self/status").read_text()
    return int(status.split("VmHWM:")[1].split()[0]) * 1024 / MB


def bench_char_encode(text: str, runs: int) -> dict:
    tokenizer = CharTokenizer.from_texts([text])
    sample = text[: MB]
    lookup = {char: index + 2 for index, char in enumerate(tokenizer.chars)}
    baseline = len(sample) / median_seconds(lambda: np.array([lookup[char] for char in sample]), runs) / MB
    vectorised = len(text) / median_seconds(lambda: tokenizer.encode(text), runs) / MB
    return {"char_encode_mb_per_s": round(vectorised, 1), "char_encode_python_baseline_mb_per_s": round(baseline, 1),
            "char_encode_speedup": round(vectorised / baseline, 1), "char_encode_text_mb": round(len(text) / MB, 1)}


def bench_sentencepiece_encode(folder: Path, text: str, num_proc: int) -> dict:
    path = folder / "spm.txt"
    path.write_text(text)
    corpus = load_corpus(DataConfig(corpus=str(path)))
    tokenizer = SentencePieceTokenizer.train(split_texts(corpus, "train"), vocab_size=2000)
    lines = text.splitlines(keepends=True)
    baseline = len(text) / median_seconds(lambda: tokenizer.processor.encode(lines, num_threads=1), 1) / MB
    start = time.perf_counter()
    tokens = token_array(corpus, "train", tokenizer, cache_dir=folder / "tokens", num_proc=num_proc)
    seconds = time.perf_counter() - start
    size = sum(len(piece) for piece in split_texts(corpus, "train"))
    return {"sentencepiece_encode_mb_per_s": round(size / seconds / MB, 2), "sentencepiece_num_proc": num_proc,
            "sentencepiece_encode_one_process_baseline_mb_per_s": round(baseline, 2),
            "sentencepiece_text_mb": round(size / MB, 1), "sentencepiece_chars_per_token": round(size / len(tokens), 2)}


def bench_sentencepiece_training() -> dict:
    if not os.environ.get("TEXTGEN_DATA"):
        return {"sentencepiece_train_2000_tiny_shakespeare_s": None}
    config = DataConfig(corpus="tiny_shakespeare", tokenizer="sentencepiece", vocab_size=2000)
    corpus = load_corpus(config)
    start = time.perf_counter()
    build_tokenizer(config, split_texts(corpus, "train"))
    return {"sentencepiece_train_2000_tiny_shakespeare_s": round(time.perf_counter() - start, 2)}


def child_prepare(corpus_path: str, cache: str) -> dict:
    """Load the corpus, build the char vocabulary and token arrays; report their paths and peak memory."""
    start = time.perf_counter()
    config = DataConfig(corpus=corpus_path)
    corpus = load_corpus(config)
    loaded = time.perf_counter()
    tokenizer = build_tokenizer(config, split_texts(corpus, "train"))
    vocabulary = time.perf_counter()
    train = token_array(corpus, "train", tokenizer, cache_dir=cache)
    token_array(corpus, "validation", tokenizer, cache_dir=cache)
    return {"load_s": round(loaded - start, 1), "vocabulary_s": round(vocabulary - loaded, 1),
            "token_array_s": round(time.perf_counter() - vocabulary, 1), "train_tokens": len(train),
            "train_path": str(train.filename), "dtype": train.dtype.name, "peak_rss_mb": round(peak_rss_mb())}


def child_iterate(array_path: str, dtype: str) -> dict:
    """Read every window of an epoch of StreamBatches; report windows per second and peak memory."""
    tokens = np.memmap(array_path, dtype=dtype, mode="r")
    batches = StreamBatches(tokens, batch_size=64, seq_len=128)
    start = time.perf_counter()
    for index in range(batches.windows_per_epoch):
        batches.window(index)
    seconds = time.perf_counter() - start
    return {"windows": batches.windows_per_epoch, "windows_per_s": round(batches.windows_per_epoch / seconds),
            "peak_rss_mb": round(peak_rss_mb())}


def run_child(*args: str, env: dict) -> dict:
    """Run this script as a child with `args` and return the JSON it prints."""
    result = subprocess.run([sys.executable, __file__, *args], env=env, check=True, capture_output=True, text=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def bench_large_corpus(folder: Path, size_mb: int) -> dict:
    block = generated_text(16 * MB, seed=1)
    corpus_path = folder / "large.txt"
    with open(corpus_path, "w") as out:
        for _ in range(max(1, size_mb * MB // len(block))):
            out.write(block)
    # the datasets cache of a corpus this size goes in the temporary folder too
    env = {**os.environ, "HF_DATASETS_CACHE": str(folder / "hf")}
    prepare = run_child("--child-prepare", str(corpus_path), str(folder / "tokens"), env=env)
    iterate = run_child("--child-iterate", prepare.pop("train_path"), prepare["dtype"], env=env)
    return {"large_corpus_mb": round(corpus_path.stat().st_size / MB), "prepare": prepare, "iterate": iterate,
            "peak_rss_mb_limit": 1500}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=500, help="size of the generated corpus for the memory test")
    parser.add_argument("--num-proc", type=int, default=2, help="processes for SentencePiece encoding")
    parser.add_argument("--runs", type=int, default=5, help="runs per speed measurement (the median is reported)")
    parser.add_argument("--child-prepare", nargs=2, metavar=("CORPUS", "CACHE"), help=argparse.SUPPRESS)
    parser.add_argument("--child-iterate", nargs=2, metavar=("ARRAY", "DTYPE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_prepare:
        print(json.dumps(child_prepare(*args.child_prepare)))
        return
    if args.child_iterate:
        print(json.dumps(child_iterate(*args.child_iterate)))
        return
    with tempfile.TemporaryDirectory() as folder:
        results = bench_char_encode(generated_text(20 * MB), args.runs)
        results |= bench_sentencepiece_encode(Path(folder), generated_text(20 * MB, seed=2), args.num_proc)
        results |= bench_sentencepiece_training()
        results |= bench_large_corpus(Path(folder), args.size_mb)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
