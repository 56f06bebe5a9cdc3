"""Sampling: a language model continues a prompt, streamed; with a copy check, each sample is also
measured against the text the model trained on."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass

from textgen.data.files import local_or_example, read_text_file
from textgen.errors import ConfigError
from textgen.generate.copying import CopyIndex
from textgen.generate.sampling import Chunk
from textgen.recipes.models import TextGenerator, load, logged_copy_checks
from textgen.requests import SampleRequest

log = logging.getLogger("textgen")


@dataclass
class Sampling:
    """A loaded model with the request's settings: `chunks` streams new text when iterated."""

    request: SampleRequest
    generator: TextGenerator
    prompt: str
    copies: CopyIndex | None

    def chunks(self, prompt: str | None = None, keep_text: bool | None = None) -> Iterator[Chunk]:
        """Chunks of each continuation of `prompt` (default: the request's); a sample's last chunk
        carries the finished sample, copy-checked (and logged) when the request asks."""
        keep = keep_text if keep_text is not None else self.request.num_samples > 1 or self.copies is not None
        chunks = self.generator.chunks(self.prompt if prompt is None else prompt, self.request.sampling(),
                                       keep_text=keep)
        return logged_copy_checks(chunks, self.copies) if self.copies is not None else chunks


def run(request: SampleRequest) -> Sampling:
    """The model loaded, the prompt read and the copy index built: ready to stream."""
    prompt = read_text_file("--prompt-file", request.prompt_file) if request.prompt_file is not None else request.prompt
    if request.greedy:
        log.info("--temperature %g is <= 0: greedy decoding, always the most likely next token", request.temperature)
    if request.num_samples == 1:
        one_thread_unless_told()
    generator = load(request.model, request.device, "language_model")
    if request.adapt_on is not None:
        document = read_text_file("--adapt-on", str(local_or_example("--adapt-on", request.adapt_on)))
        if not document.strip():
            raise ConfigError(f"--adapt-on {request.adapt_on} holds no text; give a document to adapt to")
        started = time.perf_counter()
        generator = generator.adapted(document + prompt)
        log.info("adapted to %s (%s characters with the prompt) in %.1f s", request.adapt_on,
                 f"{len(document) + len(prompt):,}", time.perf_counter() - started)
    copies = generator.copy_index(request.check_copy, request.data_dir) if request.check_copy is not None else None
    return Sampling(request, generator, prompt, copies)


def one_thread_unless_told() -> None:
    """One torch thread for a small model's step-by-step work unless OMP_NUM_THREADS says how many:
    beside other work, more threads wait on each other (docs/performance.md#threads)."""
    import torch

    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(1)
