"""Run `textgen` under torchrun, then save this rank's final weights to DUMP_DIR/rank<R>.pt.

Usage: torchrun --standalone --nproc-per-node 2 tests/ddp_worker.py DUMP_DIR train ...
"""

import os
import sys

import torch

import textgen.training.trainer
from textgen import cli

dump_dir = sys.argv[1]
real_fit = textgen.training.trainer.fit


def fit_then_dump(model, *args, **kwargs):
    result = real_fit(model, *args, **kwargs)
    torch.save(model.state_dict(), os.path.join(dump_dir, f"rank{os.environ['RANK']}.pt"))
    return result


textgen.training.trainer.fit = fit_then_dump
sys.exit(cli.main(sys.argv[2:]))
