"""Compute precision: which of fp32, bf16 and fp16 a run uses, and the autocast and kernel settings
that go with it."""

from __future__ import annotations

import os
import platform
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Iterator

import torch

from textgen.errors import ConfigError


def cpu_has_native_bf16() -> bool:
    """True on CPUs whose oneDNN runs bf16 natively (AMX or AVX512-BF16)."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def cpu_name() -> str:
    """The processor's model name and core count, e.g. 'AMD EPYC (2 cores)': what a speed figure depends on."""
    cpuinfo = Path("/proc/cpuinfo")
    for line in cpuinfo.read_text().splitlines() if cpuinfo.exists() else []:
        if line.startswith("model name"):
            return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    return platform.processor() or platform.machine()


def resolve_precision(requested: str, device: torch.device) -> str:
    """fp32, bf16 or fp16 for --precision on `device`; auto is bf16 only where hardware runs it."""
    if requested == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return "bf16"
        if device.type == "cpu" and cpu_has_native_bf16():
            return "bf16"
        return "fp32"
    if requested == "fp16" and device.type != "cuda":
        raise ConfigError(f"--precision fp16 needs a CUDA GPU (this run is on {device.type}); "
                          f"use --precision bf16 or fp32")
    return requested


AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@contextmanager
def precision_context(precision: str, device: torch.device) -> Iterator[None]:
    """Kernel settings for the whole run: oneDNN has no bf16 RNN on CPUs without native bf16."""
    if precision == "bf16" and device.type == "cpu" and not cpu_has_native_bf16():
        with torch.backends.mkldnn.flags(enabled=False):
            yield
    else:
        yield


def autocast(precision: str, device: torch.device):
    """The autocast context for a forward pass (a no-op in fp32)."""
    if precision == "fp32":
        return nullcontext()
    return torch.autocast(device.type, dtype=AUTOCAST_DTYPES[precision])
