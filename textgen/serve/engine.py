"""Continuous batching: every live stream of one language model advances in one batched step.

One thread per model runs the loop, so torch never blocks the event loop. Between steps, streams
join (their prompt read in chunks of `PROMPT_CHUNK` tokens, so a long prompt delays the others by
one chunk at most) and leave (finished, or their client gone). Each stream keeps its own decoding
controls, token history, text cutting and random generator seeded with seed + sample index, and
samples exactly as `generate.sampling.stream` does for one row: a seeded request gives the same
text whatever else is running.
"""

from __future__ import annotations

import asyncio
import collections
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from textgen.config import SampleConfig
from textgen.data.tokenizer import Tokenizer
from textgen.errors import TextgenError
from textgen.generate.processors import RepetitionPenalty, apply_processors
from textgen.generate.sampling import (_Continuation, _Detokenizer, _History, _max_tokens, _processors, _Uniforms, draw,
                                       encode_text, label_ids, start_token)
from textgen.generate.stepper import Stepper
from textgen.nn.model import LanguageModel, select_state

PROMPT_CHUNK = 256  # prompt tokens one stream reads per step


class Busy(TextgenError):
    """Every stream slot is taken and the queue is full."""


@dataclass
class Token:
    """One generated token: its text, the model's log-probability of it, and the likeliest alternatives."""

    text: str
    logprob: float
    top: dict[str, float] | None


@dataclass
class Event:
    """New text of sample `index`; `finish_reason` ("stop" or "length") on its last event."""

    index: int
    text: str
    tokens: list[Token]
    finish_reason: str | None = None
    completion_tokens: int = 0
    error: str | None = None  # the job failed (a label the model lacks); no more events follow


@dataclass(eq=False)
class Job:
    """A request's samples, and where their events wait for the request's coroutine (on `loop`).

    The engine thread appends events; the coroutine takes them all at once, and is woken across
    threads only when it is waiting: a stream that reads every few steps costs the loop no wakeup on
    the steps between."""

    prompt: str
    config: SampleConfig
    logprobs: int
    loop: asyncio.AbstractEventLoop
    prompt_tokens: int = 0
    cancelled: bool = False
    pending: collections.deque = field(default_factory=collections.deque)
    waiter: asyncio.Future | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def cancel(self) -> None:
        """Stop generating (the client left): its rows leave at the next step."""
        self.cancelled = True

    def take(self) -> list[Event]:
        """The events that have come, without waiting."""
        with self.lock:
            events = list(self.pending)
            self.pending.clear()
        return events

    async def next_events(self) -> list[Event]:
        """The events that have come, waiting for at least one."""
        with self.lock:
            if not self.pending:
                self.waiter = self.loop.create_future()
        if self.waiter is not None:
            await self.waiter
        return self.take()

    def put(self, events: list[Event]) -> asyncio.Future | None:
        """Add events (the engine's side); the waiter to wake, if the coroutine waits."""
        with self.lock:
            self.pending.extend(events)
            waiter, self.waiter = self.waiter, None
        return waiter


@dataclass
class _Row:
    """One sample being generated."""

    job: Job
    index: int
    label: int  # label id of a conditioned model (0: none)
    processors: tuple
    uniforms: _Uniforms | None  # None: greedy
    history: _History | None  # kept only where a processor reads it
    decoded: list
    text: _Continuation
    max_tokens: int
    steps: int = 0
    chars: int = 0  # characters decoded so far, for each token's place in the text
    pending: list[tuple[int, Token]] = field(default_factory=list)  # (start offset, token) not yet shown
    shown: int = 0


@dataclass
class _Prompt:
    """A stream still reading its prompt: ids left and the state so far."""

    row: _Row
    ids: list[int]
    labels: torch.Tensor | None
    state: object = None
    logits: torch.Tensor | None = None


class Engine:
    """The batching loop of one language model; `submit` adds a job, events come back on its queue."""

    def __init__(self, model: LanguageModel, tokenizer: Tokenizer, device: torch.device, max_streams: int,
                 max_queue: int, on_step: Callable[[int, int, int], None] | None = None):
        self.model, self.tokenizer, self.device = model.eval(), tokenizer, device
        self.max_streams, self.max_queue = max_streams, max_queue
        self.on_step = on_step  # told (active rows, queued jobs, characters generated) after each step
        self.stepper = Stepper(model)
        self.detokenizer = _Detokenizer(tokenizer)
        self.start = start_token(tokenizer)
        self.conditioned = model.label_embedding is not None
        self.token_texts = [tokenizer.decode([i]) for i in range(tokenizer.vocab_size)]
        self.lock = threading.Condition()
        self.arrived: collections.deque[Job] = collections.deque()  # given slots, not yet started
        self.waiting: collections.deque[Job] = collections.deque()  # waiting for slots
        self.active_rows = 0  # slots taken: rows arrived, reading their prompt or generating
        self.thread: threading.Thread | None = None
        self.closed = False

    # --- the event loop's side ---

    def submit(self, job: Job) -> None:
        """Give `job` free slots now, or queue it; `Busy` when neither is possible."""
        rows = job.config.num_samples
        with self.lock:
            if self.closed:
                raise TextgenError("the server is shutting down")
            if not self.waiting and self.active_rows + rows <= self.max_streams:
                self.active_rows += rows
                self.arrived.append(job)
            elif len(self.waiting) < self.max_queue:
                self.waiting.append(job)
            else:
                raise Busy(f"all {self.max_streams} stream slots are busy and {len(self.waiting)} requests wait; "
                           f"retry in a moment")
            if self.thread is None:
                self.thread = threading.Thread(target=self._run, name="textgen-engine", daemon=True)
                self.thread.start()
            self.lock.notify()

    def close(self) -> None:
        """End the loop after the current step."""
        with self.lock:
            self.closed = True
            self.lock.notify()
        if self.thread is not None:
            self.thread.join(timeout=10)

    # --- the engine thread ---

    def _admit(self, prompts: list[_Prompt]) -> None:
        """Start the jobs given slots, and move queued jobs into slots freed (called with the lock held)."""
        while self.waiting and self.active_rows + self.waiting[0].config.num_samples <= self.max_streams:
            job = self.waiting.popleft()
            if not job.cancelled:
                self.active_rows += job.config.num_samples
                self.arrived.append(job)
        while self.arrived:
            job = self.arrived.popleft()
            if job.cancelled:
                self.active_rows -= job.config.num_samples
                continue
            try:
                prompts.extend(self._rows(job))
            except TextgenError as error:
                self.active_rows -= job.config.num_samples
                _deliver({job: [Event(0, "", [], error=str(error))]})

    def _rows(self, job: Job) -> list[_Prompt]:
        config = job.config
        ids = encode_text(self.tokenizer, job.prompt)
        job.prompt_tokens = len(ids)
        labels = label_ids(self.model, config.label, config.num_samples, self.device)
        processors = tuple(_processors(self.tokenizer, config))
        reads_history = any(isinstance(p, RepetitionPenalty) for p in processors)
        seed = config.seed if config.seed is not None else int.from_bytes(os.urandom(6), "little")
        max_tokens = _max_tokens(self.tokenizer, config.length)
        prompts = []
        for index in range(config.num_samples):
            label = None if labels is None else labels[index:index + 1]
            history = (_History(ids, 1, config.repetition_window, max_tokens, self.device) if reads_history
                       else None)
            uniforms = None if config.greedy else _Uniforms(seed + index, 1, self.device)
            row = _Row(job, index, 0 if label is None else int(label), processors, uniforms, history,
                       self.detokenizer.new_row(), _Continuation(config.length, config.stop, keep_text=False),
                       max_tokens)
            prompts.append(_Prompt(row, [self.start, *ids], label))
        return prompts

    def _run(self) -> None:
        prompts: list[_Prompt] = []
        rows: list[_Row] = []
        try:
            self._loop(prompts, rows)
        except Exception as error:  # a bug: fail the jobs in flight rather than leave them hanging
            jobs = {item.row.job for item in prompts} | {row.job for row in rows}
            _deliver({job: [Event(0, "", [], error=f"generation failed: {error!r}")] for job in jobs})
            with self.lock:
                self.thread, self.active_rows = None, self.active_rows - len(prompts) - len(rows)
            raise

    def _loop(self, prompts: list[_Prompt], rows: list[_Row]) -> None:
        """Steps until closed; `prompts` and `rows` are the streams in flight, updated in place."""
        state, tokens = None, None  # the batch's state and last tokens
        while True:
            with self.lock:
                self._admit(prompts)
                while not prompts and not rows and not self.closed:
                    if self.on_step is not None:  # the last streams have left: say so before sleeping
                        self.on_step(self.active_rows, len(self.waiting), 0)
                    self.lock.wait()
                    self._admit(prompts)
                if self.closed:
                    return
            with torch.inference_mode():
                live = [i for i, row in enumerate(rows) if not row.job.cancelled]
                if len(live) < len(rows):
                    self._release(len(rows) - len(live))
                    rows[:] = [rows[i] for i in live]
                    if rows:
                        index = torch.tensor(live, device=self.device)
                        state, tokens = select_state(state, index), tokens[index]
                logits = None
                if rows:
                    logits, state = self.stepper(tokens, state, self._labels(rows))
                gone = [p for p in prompts if p.row.job.cancelled]
                if gone:
                    self._release(len(gone))
                    prompts[:] = [p for p in prompts if not p.row.job.cancelled]
                ready = self._read_prompts(prompts)
                if ready:
                    prompts[:] = [p for p in prompts if p.logits is None]
                    new_state = _cat_states([p.state for p in ready])
                    state = new_state if state is None or not rows else _cat_states([state, new_state])
                    new_logits = torch.cat([p.logits for p in ready])
                    logits = new_logits if logits is None else torch.cat([logits, new_logits])
                    rows.extend(p.row for p in ready)
                if not rows:
                    continue
                tokens, kept, deliveries, chars = self._sample(rows, logits)
                if len(kept) < len(rows):
                    self._release(len(rows) - len(kept))
                    rows[:] = [rows[i] for i in kept]
                    index = torch.tensor(kept, device=self.device)
                    state, tokens = (select_state(state, index), tokens[index]) if rows else (None, None)
            _deliver(deliveries)
            if self.on_step is not None:
                self.on_step(self.active_rows, len(self.waiting), chars)

    def _release(self, count: int) -> None:
        with self.lock:
            self.active_rows -= count

    def _labels(self, rows: list[_Row]) -> torch.Tensor | None:
        if not self.conditioned:
            return None
        return torch.tensor([row.label for row in rows], device=self.device)

    def _read_prompts(self, prompts: list[_Prompt]) -> list[_Prompt]:
        """One chunk of each waiting prompt, `PROMPT_CHUNK` tokens in all at least; those done.
        Chunks of one length read together, as one batch: streams that arrive together start together."""
        budget, groups = PROMPT_CHUNK, collections.defaultdict(list)
        for prompt in prompts:
            if budget <= 0:
                break
            chunk, prompt.ids = prompt.ids[:PROMPT_CHUNK], prompt.ids[PROMPT_CHUNK:]
            budget -= len(chunk)
            groups[len(chunk), prompt.state is None, prompt.labels is None].append((prompt, chunk))
        ready = []
        for (_, fresh, _), group in groups.items():
            ids = torch.tensor([chunk for _, chunk in group], device=self.device)  # (prompts, chunk)
            state = None if fresh else _cat_states([prompt.state for prompt, _ in group])
            labels = None if group[0][0].labels is None else torch.cat([prompt.labels for prompt, _ in group])
            logits, state = self.model(ids, state, labels)
            for row, (prompt, _) in enumerate(group):
                prompt.state = select_state(state, torch.tensor([row], device=self.device))
                if not prompt.ids:
                    prompt.logits = logits[row:row + 1, -1]
                    ready.append(prompt)
        return ready

    def _sample(self, rows: list[_Row], logits: torch.Tensor):
        """Each row's next token, as `sampling.stream` picks it; the rows that go on, and the events."""
        raw = logits.float()  # (rows, vocab)
        scores = torch.empty_like(raw)
        groups: dict[tuple, list[int]] = {}
        for position, row in enumerate(rows):
            if row.history is not None:  # its processors read its own history
                scores[position] = apply_processors(list(row.processors), row.history.ids[:, :row.history.filled],
                                                    raw[position:position + 1])[0]
            else:
                groups.setdefault(row.processors, []).append(position)
        for processors, positions in groups.items():
            if len(positions) == len(rows):  # these processors read no history: `raw` stands in for it
                scores = apply_processors(list(processors), raw, raw)
            else:
                index = torch.tensor(positions, device=self.device)
                scores[index] = apply_processors(list(processors), raw, raw[index])
        sampled = [position for position, row in enumerate(rows) if row.uniforms is not None]
        if len(sampled) == len(rows):
            tokens = self._draw(rows, scores)
        else:
            tokens = scores.argmax(-1)
            if sampled:
                index = torch.tensor(sampled, device=self.device)
                tokens[index] = self._draw([rows[i] for i in sampled], scores[index])
        log_probs = raw.log_softmax(-1)
        chosen = log_probs.gather(-1, tokens[:, None]).squeeze(1).tolist()
        most = min(max(row.job.logprobs for row in rows), raw.size(-1))
        top = log_probs.topk(most, -1) if most else None
        kept, deliveries, chars = [], collections.defaultdict(list), 0
        for position, (row, token) in enumerate(zip(rows, tokens.tolist())):
            if row.history is not None:
                row.history.append(tokens[position:position + 1])
            row.steps += 1
            piece = self.detokenizer.add(row.decoded, token)
            alternatives = None
            if row.job.logprobs:
                values, ids = top.values[position, :row.job.logprobs].tolist(), top.indices[position].tolist()
                alternatives = {self.token_texts[i]: v for i, v in zip(ids, values)}
            row.pending.append((row.chars, Token(piece, chosen[position], alternatives)))
            row.chars += len(piece)
            text, reason = row.text.add(piece, last=row.steps == row.max_tokens)
            row.shown += len(text)
            chars += len(text)
            if reason is None:
                kept.append(position)
                shown = [token for start, token in row.pending if start + len(token.text) <= row.shown]
                row.pending = row.pending[len(shown):]
                if text or shown:
                    deliveries[row.job].append(Event(row.index, text, shown))
            else:
                shown = [token for start, token in row.pending if start < row.shown or not token.text]
                finish = "stop" if reason == "stop_string" else "length"
                count = row.steps - len(row.pending) + len(shown)
                deliveries[row.job].append(Event(row.index, text, shown, finish, count))
        return tokens, kept, deliveries, chars

    def _draw(self, rows: list[_Row], scores: torch.Tensor) -> torch.Tensor:
        return draw(scores, torch.cat([row.uniforms.next() for row in rows]))


def _cat_states(states: list) -> object:
    """States side by side along the batch (dim 1)."""
    if isinstance(states[0], tuple):
        return tuple(torch.cat(parts, 1) for parts in zip(*states))
    return torch.cat(states, 1)


def _deliver(deliveries: dict[Job, list[Event]]) -> None:
    """Each job's events to its coroutine; one hop per loop wakes the coroutines that wait."""
    by_loop = collections.defaultdict(list)
    for job, events in deliveries.items():
        waiter = job.put(events)
        if waiter is not None:
            by_loop[job.loop].append(waiter)
    for loop, waiters in by_loop.items():
        try:
            loop.call_soon_threadsafe(_wake, waiters)
        except RuntimeError:  # that loop has closed: its clients are gone
            pass


def _wake(waiters: list[asyncio.Future]) -> None:
    for waiter in waiters:
        if not waiter.done():  # a client that left cancelled its wait
            waiter.set_result(None)
