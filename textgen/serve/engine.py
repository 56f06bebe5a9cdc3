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
import ctypes
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from textgen.config import SampleConfig
from textgen.data.tokenizer import Tokenizer
from textgen.errors import TextgenError
from textgen.generate.processors import GUARD_SPAN, GUARD_WINDOW, RepeatGuard, RepetitionPenalty, apply_processors
from textgen.generate.sampling import (_Continuation, _Detokenizer, _History, _max_tokens, _processors, _Uniforms, draw,
                                       encode_text, history_kept, label_ids, start_token)
from textgen.generate.scoring import token_log_probs
from textgen.generate.stepper import Stepper
from textgen.nn.model import LanguageModel, select_state

try:
    _LIBC = ctypes.CDLL(None)
except OSError:  # no C library to load by that name (Windows)
    _LIBC = None

PROMPT_CHUNK = 256  # prompt tokens one stream reads per step
PROMPTS_KEPT = 256  # states after short prompts read lately, kept to start the same prompt again at once


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

    The engine gathers each sample's text and hands it over at most every `interval` seconds (at
    once when a sample finishes; `math.inf`: only then), so a stream costs the event loop one
    wakeup, one JSON and one socket write per interval, not per step. The coroutine takes the
    events all at once, and is woken across threads only when it is waiting."""

    prompt: str
    config: SampleConfig
    logprobs: int
    loop: asyncio.AbstractEventLoop
    interval: float = 0.0
    prompt_tokens: int = 0
    due: float = 0.0  # (the engine's) when the text gathered next goes out
    rows: list = field(default_factory=list, repr=False)  # (the engine's) its samples not yet finished
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


def _recent(histories: list[_History]) -> torch.Tensor:
    """The last GUARD_WINDOW + GUARD_SPAN tokens of each history (rows, tokens), -1 (no token, which
    the repeat guard never matches) before a shorter one."""
    width = GUARD_WINDOW + GUARD_SPAN
    return torch.stack([F.pad(history.ids[0, max(0, history.filled - width):history.filled],
                              (max(0, width - history.filled), 0), value=-1) for history in histories])


@dataclass(eq=False)
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
    # tokens are kept (for logprobs, or to count those a stop string cuts) only where needed
    keeps_tokens: bool = False
    pending: list[tuple[int, Token]] = field(default_factory=list)  # (start offset, token) not yet shown
    shown: int = 0
    unsent: list[str] = field(default_factory=list)  # text shown since the job's last delivery
    unsent_tokens: list[Token] = field(default_factory=list)
    finish: str | None = None  # "stop" or "length" once finished


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
        # streams of equal settings share one tuple of processors, so a step groups them by identity
        self.shared_processors: dict[tuple, tuple] = {}
        self.read_lately: collections.OrderedDict[tuple, tuple] = collections.OrderedDict()
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

    def prompt_tokens(self, prompt: str, top: int) -> list[Token]:
        """Each token of `prompt` with the model's log-probability of it there and, given `top`, the
        likeliest alternatives, as generated tokens carry them (echo with logprobs). It reads the model,
        never the streams, so it runs beside the loop, as the score route does."""
        ids, log_probs = token_log_probs(self.model, self.tokenizer, prompt, self.device)
        chosen = log_probs.gather(-1, torch.tensor(ids, device=log_probs.device)[:, None]).squeeze(1).tolist()
        best = log_probs.topk(min(top, log_probs.size(-1)), -1) if top else None
        decoded, tokens = self.detokenizer.new_row(), []
        for position, (token, value) in enumerate(zip(ids, chosen)):
            alternatives = None
            if best is not None:
                alternatives = {self.token_texts[i]: v for i, v in zip(best.indices[position].tolist(),
                                                                        best.values[position].tolist())}
            tokens.append(Token(self.detokenizer.add(decoded, token), value, alternatives))
        return tokens

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
        if len(self.shared_processors) > 1000:  # bounded: streams of new settings start new groups
            self.shared_processors.clear()
        processors = self.shared_processors.setdefault(processors, processors)
        reads_history = any(isinstance(p, (RepetitionPenalty, RepeatGuard)) for p in processors)
        seed = config.seed if config.seed is not None else int.from_bytes(os.urandom(6), "little")
        max_tokens = _max_tokens(self.tokenizer, config.length)
        prompts = []
        for index in range(config.num_samples):
            label = None if labels is None else labels[index:index + 1]
            history = (_History(ids, 1, history_kept(config), max_tokens, self.device) if reads_history
                       else None)
            uniforms = None if config.greedy else _Uniforms(seed + index, 1, self.device)
            row = _Row(job, index, 0 if label is None else int(label), processors, uniforms, history,
                       self.detokenizer.new_row(), _Continuation(config.length, config.stop, keep_text=False),
                       max_tokens, keeps_tokens=bool(job.logprobs or config.stop))
            prompts.append(_Prompt(row, [self.start, *ids], label))
        job.rows = [prompt.row for prompt in prompts]
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
        stepped = False
        while True:
            if stepped and not prompts and not rows:  # gone idle: the memory the steps freed goes back
                _trim_memory()
                stepped = False
            with self.lock:
                self._admit(prompts)
                while not prompts and not rows and not self.closed:
                    if self.on_step is not None:  # the last streams have left: say so before sleeping
                        self.on_step(self.active_rows, len(self.waiting), 0)
                    self.lock.wait()
                    self._admit(prompts)
                if self.closed:
                    return
            stepped = True
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
        Chunks of one length read together, as one batch: streams that arrive together start together.
        A short prompt read lately (or twice in one batch) is read once: its state is kept."""
        budget, groups, ready = PROMPT_CHUNK, collections.defaultdict(list), []
        for prompt in prompts:
            if prompt.state is None and len(prompt.ids) <= PROMPT_CHUNK:
                key = (tuple(prompt.ids), prompt.row.label)
                known = self.read_lately.get(key)
                if known is not None:
                    self.read_lately.move_to_end(key)
                    prompt.ids, (prompt.state, prompt.logits) = [], known
                    ready.append(prompt)
                    continue
            if budget <= 0:
                continue
            chunk, prompt.ids = prompt.ids[:PROMPT_CHUNK], prompt.ids[PROMPT_CHUNK:]
            budget -= len(chunk)
            groups[len(chunk), prompt.state is None, prompt.labels is None].append((prompt, chunk))
        for (_, fresh, _), group in groups.items():
            # a fresh chunk is the whole text so far: equal ones (under one label) end in one state
            reads, read, rows = {}, [], []  # key -> row read; the prompts read; each prompt's row
            for prompt, chunk in group:
                key = (tuple(chunk), prompt.row.label) if fresh else len(read)
                if key not in reads:
                    reads[key] = len(read)
                    read.append((prompt, chunk))
                rows.append(reads[key])
            ids = torch.tensor([chunk for _, chunk in read], device=self.device)  # (prompts read, chunk)
            state = None if fresh else _cat_states([prompt.state for prompt, _ in read])
            labels = None if read[0][0].labels is None else torch.cat([prompt.labels for prompt, _ in read])
            logits, state = self._read(ids, state, labels)
            for row, (prompt, chunk) in zip(rows, group):
                prompt.state = select_state(state, torch.tensor([row], device=self.device))
                if not prompt.ids:
                    prompt.logits = logits[row:row + 1, -1]
                    ready.append(prompt)
                    if fresh:
                        self._keep((tuple(chunk), prompt.row.label), prompt.state, prompt.logits)
        return ready

    def _read(self, ids: torch.Tensor, state: object, labels: torch.Tensor | None) -> tuple[torch.Tensor, object]:
        """`model(ids, state, labels)` for the last position, read in pieces of power-of-two lengths
        with the batch padded to a power of two: oneDNN keeps a kernel for each shape it meets (up to
        a thousand, some 100 KB each), so a server that met every prompt length would keep growing."""
        rows, padded = ids.size(0), 1 << (ids.size(0) - 1).bit_length()
        if padded > rows:  # the first row again, its results dropped
            index = torch.cat([torch.arange(rows), torch.zeros(padded - rows, dtype=torch.long)]).to(self.device)
            ids, labels = ids[index], None if labels is None else labels[index]
            state = None if state is None else select_state(state, index)
        begin = 0
        while begin < ids.size(1):
            size = 1 << ((ids.size(1) - begin).bit_length() - 1)
            logits, state = self.model(ids[:, begin:begin + size], state, labels)
            begin += size
        if padded > rows:
            logits, state = logits[:rows], select_state(state, torch.arange(rows, device=self.device))
        return logits, state

    def _keep(self, key: tuple, state: object, logits: torch.Tensor) -> None:
        """Remember a short prompt's state and logits (a few kilobytes), the `PROMPTS_KEPT` latest."""
        self.read_lately[key] = (state, logits)
        self.read_lately.move_to_end(key)
        if len(self.read_lately) > PROMPTS_KEPT:
            self.read_lately.popitem(last=False)

    def _sample(self, rows: list[_Row], logits: torch.Tensor):
        """Each row's next token, as `sampling.stream` picks it; the rows that go on, and the events."""
        raw = logits.float()  # (rows, vocab)
        scores = torch.empty_like(raw)
        groups: dict[int, list[int]] = {}  # id(processors) -> positions
        for position, row in enumerate(rows):
            if row.history is not None and any(isinstance(p, RepetitionPenalty) for p in row.processors):
                # it reads its own history, every token of it real
                scores[position] = apply_processors(list(row.processors), row.history.ids[:, :row.history.filled],
                                                    raw[position:position + 1])[0]
            else:
                groups.setdefault(id(row.processors), []).append(position)
        for positions in groups.values():
            processors = rows[positions[0]].processors
            # the repeat guard reads the rows' recent tokens side by side; other processors read no history,
            # and `raw` stands in for it
            history = raw if rows[positions[0]].history is None else _recent([rows[i].history for i in positions])
            if len(positions) == len(rows):
                scores = apply_processors(list(processors), history, raw)
            else:
                index = torch.tensor(positions, device=self.device)
                scores[index] = apply_processors(list(processors), history, raw[index])
        sampled = [position for position, row in enumerate(rows) if row.uniforms is not None]
        if len(sampled) == len(rows):
            tokens = self._draw(rows, scores)
        else:
            tokens = scores.argmax(-1)
            if sampled:
                index = torch.tensor(sampled, device=self.device)
                tokens[index] = self._draw([rows[i] for i in sampled], scores[index])
        token_list = tokens.tolist()
        chosen = top = None
        if any(row.keeps_tokens for row in rows):
            log_probs = raw.log_softmax(-1)
            chosen = log_probs.gather(-1, tokens[:, None]).squeeze(1).tolist()
            most = min(max(row.job.logprobs for row in rows), raw.size(-1))
            top = log_probs.topk(most, -1) if most else None
        kept, ending, chars = [], set(), 0
        for position, (row, token) in enumerate(zip(rows, token_list)):
            if row.history is not None:
                row.history.append(tokens[position:position + 1])
            row.steps += 1
            piece = self.detokenizer.add(row.decoded, token)
            if row.keeps_tokens:
                alternatives = None
                if row.job.logprobs:
                    values, ids = top.values[position, :row.job.logprobs].tolist(), top.indices[position].tolist()
                    alternatives = {self.token_texts[i]: v for i, v in zip(ids, values)}
                row.pending.append((row.chars, Token(piece, chosen[position], alternatives)))
                row.chars += len(piece)
            text, reason = row.text.add(piece, last=row.steps == row.max_tokens)
            chars += len(text)
            if text:
                row.unsent.append(text)
            if row.keeps_tokens:
                row.shown += len(text)
                if reason is None:
                    shown = [token for start, token in row.pending if start + len(token.text) <= row.shown]
                else:  # the tokens a stop string cuts away are not the sample's
                    shown = [token for start, token in row.pending if start < row.shown or not token.text]
                row.pending = row.pending[len(shown):]
                row.unsent_tokens += shown
            if reason is None:
                kept.append(position)
            else:
                row.finish = "stop" if reason == "stop_string" else "length"
                ending.add(row.job)
        return tokens, kept, self._deliveries(rows, ending), chars

    @staticmethod
    def _deliveries(rows: list[_Row], ending: set[Job]) -> dict[Job, list[Event]]:
        """The text gathered for each job that is due, or has a sample that finished this step."""
        now, deliveries = time.monotonic(), {}
        for job in dict.fromkeys(row.job for row in rows):
            if job.due > now and job not in ending:
                continue
            job.due = now + job.interval
            events = deliveries[job] = []
            for row in job.rows:
                if row.unsent or row.unsent_tokens or row.finish:
                    events.append(Event(row.index, "".join(row.unsent), row.unsent_tokens, row.finish,
                                        row.steps - len(row.pending) if row.finish else 0))
                    row.unsent, row.unsent_tokens = [], []
            job.rows = [row for row in job.rows if row.finish is None]
        return deliveries

    def _draw(self, rows: list[_Row], scores: torch.Tensor) -> torch.Tensor:
        return draw(scores, torch.tensor([row.uniforms.next_number() for row in rows], device=self.device))


def _trim_memory() -> None:
    """Give the system back the heap memory freed since (glibc keeps it for reuse otherwise, and a
    server's memory would sit at its busiest); a no-op where the C library has no `malloc_trim`."""
    trim = getattr(_LIBC, "malloc_trim", None)
    if trim is not None:
        trim(0)


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
