import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from test_train import train_args

WORKER = Path(__file__).with_name("ddp_worker.py")


@pytest.mark.slow
@pytest.mark.distributed
def test_two_cpu_processes_train_in_step_and_only_rank_0_writes(corpus, tmp_path):
    run, dump = tmp_path / "run", tmp_path / "dump"
    dump.mkdir()
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               str(WORKER), str(dump), *train_args(corpus, run, "--max-steps", "6")]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-3000:]

    rank0, rank1 = torch.load(dump / "rank0.pt"), torch.load(dump / "rank1.pt")
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), name
    assert {p.name for p in run.iterdir()} == {"last.pt", "best.pt", "config.json", "metrics.jsonl"}
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in records if "loss" in r and "split" not in r]
    assert steps == [1, 2, 3, 4, 5, 6]  # one writer: every step logged once
    saved = torch.load(run / "last.pt", weights_only=True)
    assert len(saved["ranks"]) == 2 and saved["step"] == 6
    for name in rank0:
        assert torch.equal(saved["model"][name], rank0[name]), name
