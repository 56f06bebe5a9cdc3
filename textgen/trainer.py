"""The training loop: mixed precision, DDP, warm-up + cosine schedule, evaluation, checkpoints.

The loop never knows which corpus or which cell it trains: it receives a model, a task (batches,
loss and evaluation for language modelling or classification) and a `TrainConfig`.
"""

from __future__ import annotations

import fcntl
import itertools
import json
import math
import os
import signal
import sys
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Protocol

import torch
import torch.distributed as torch_dist
import torch.nn.functional as F
from torch import nn

from textgen.batches import LabelledBatches, StreamBatches
from textgen.checkpoint import load_checkpoint, save_checkpoint
from textgen.config import FinetuneConfig, TrainConfig
from textgen.errors import CheckpointError, ConfigError, TrainingError
from textgen.model import State, detach_state

LN2 = math.log(2.0)


def cpu_has_native_bf16() -> bool:
    """True on CPUs whose oneDNN runs bf16 natively (AMX or AVX512-BF16)."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


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


@dataclass
class Distributed:
    """This process's place in a torchrun job (rank 0 of 1 when run alone)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @staticmethod
    def from_environment(device_type: str) -> "Distributed":
        """Join the process group torchrun set up, if any (nccl on GPUs, gloo on CPUs)."""
        world_size = int(os.environ.get("WORLD_SIZE", 1))
        if world_size == 1:
            return Distributed()
        if device_type == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        if not torch_dist.is_initialized():
            torch_dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
        return Distributed(torch_dist.get_rank(), world_size, int(os.environ.get("LOCAL_RANK", 0)))

    def sum(self, values: list[float], device: torch.device) -> list[float]:
        """Element-wise sums of `values` over all ranks."""
        if self.world_size == 1:
            return values
        tensor = torch.tensor(values, dtype=torch.float64, device=device)
        torch_dist.all_reduce(tensor)
        return tensor.tolist()

    def gather(self, value: Any) -> list[Any]:
        """`value` from every rank, in rank order."""
        if self.world_size == 1:
            return [value]
        values: list[Any] = [None] * self.world_size
        torch_dist.all_gather_object(values, value)
        return values


class Reporter(Protocol):
    """Where the loop reports progress; `cli` draws it, tests may record it."""

    def start(self, step: int, total_steps: int | None, time_budget: float | None) -> None: ...
    def step(self, step: int, fraction_done: float, metrics: dict[str, float]) -> None: ...
    def evaluated(self, step: int, metrics: dict[str, float]) -> None: ...
    def finish(self, summary: dict[str, Any]) -> None: ...


class SilentReporter:
    """A reporter that shows nothing."""

    def start(self, step, total_steps, time_budget): pass
    def step(self, step, fraction_done, metrics): pass
    def evaluated(self, step, metrics): pass
    def finish(self, summary): pass


class LanguageModelTask:
    """Next-token prediction over TBPTT streams, with the hidden state carried between windows."""

    kind = "language_model"

    def __init__(self, train: StreamBatches, validation: StreamBatches, chars_per_token: float,
                 eval_tokens: int | None = None):
        self.train, self.validation = train, validation
        self.chars_per_token = chars_per_token
        # None: the whole split; else at most this many full windows
        self.eval_windows = None if eval_tokens is None else max(1, eval_tokens // validation.tokens_per_window)
        self.window = 0
        self.state: State | None = None
        self.lr_scales = [1.0, 1.0]  # one per parameter group

    def train_loss(self, model: nn.Module, device: torch.device, precision: str
                   ) -> tuple[torch.Tensor, int]:
        """Mean loss on the next window (and its token count); moves the data position on."""
        index = self.window % self.train.windows_per_epoch
        if index == 0:
            self.state = None  # a new epoch starts the streams again from their beginnings
        inputs, targets = (t.to(device, non_blocking=True) for t in self.train.window(index))
        with autocast(precision, device):
            logits, state = model(inputs, self.state)
        self.state = detach_state(state)
        self.window += 1
        loss = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten())
        return loss, targets.numel()

    @torch.no_grad()
    def evaluate(self, model: nn.Module, device: torch.device, dist: Distributed) -> dict[str, float]:
        """Validation loss (nats per token), bits per token and character, and perplexity."""
        model.eval()
        total_loss, total_tokens, state = 0.0, 0, None
        windows = self.validation.evaluation_windows()
        for inputs, targets in itertools.islice(windows, self.eval_windows):
            inputs, targets = inputs.to(device), targets.to(device)
            logits, state = model(inputs, state)
            total_loss += F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(),
                                          reduction="sum").item()
            total_tokens += targets.numel()
        model.train()
        total_loss, total_tokens = dist.sum([total_loss, float(total_tokens)], device)
        loss = total_loss / total_tokens
        return {"val_loss": loss, "bits_per_token": loss / LN2,
                "bits_per_char": loss / LN2 / self.chars_per_token,
                "perplexity": math.exp(min(loss, 50.0)), "val_tokens": total_tokens}

    @staticmethod
    def objective(metrics: dict[str, float]) -> float:
        """Lower is better: the validation loss."""
        return metrics["val_loss"]

    def parameter_groups(self, model: nn.Module, config: TrainConfig) -> list[dict[str, Any]]:
        """AdamW groups: weight decay on matrices only, not on biases."""
        params = [p for p in model.parameters() if p.requires_grad]
        return [{"params": [p for p in params if p.dim() >= 2], "weight_decay": config.weight_decay},
                {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]

    def state_dict(self) -> dict[str, Any]:
        """The data position and carried hidden state, so a resumed run continues exactly."""
        state = self.state
        return {"window": self.window,
                "hidden": None if state is None else [s.cpu() for s in (state if isinstance(state, tuple) else (state,))]}

    def load_state_dict(self, data: dict[str, Any], device: torch.device) -> None:
        self.window = data["window"]
        hidden = data["hidden"]
        if hidden is None:
            self.state = None
        else:
            hidden = [h.to(device) for h in hidden]
            self.state = tuple(hidden) if len(hidden) == 2 else hidden[0]


class ClassificationTask:
    """Labelled texts through a classifier; ULMFiT's gradual unfreezing and discriminative
    learning rates when the encoder comes from a language model; early stopping on accuracy."""

    kind = "classifier"

    def __init__(self, train: LabelledBatches, validation: LabelledBatches, finetune: FinetuneConfig,
                 group_count: int, pretrained: bool, dist: Distributed):
        self.train, self.validation, self.finetune = train, validation, finetune
        self.group_count, self.pretrained, self.dist = group_count, pretrained, dist
        self.epoch, self.batch_index, self._epoch_batches = 0, 0, None
        self.evaluations, self.stale_evaluations, self.best_accuracy = 0, 0, -1.0
        # A pretrained encoder starts frozen but for the head, then thaws one group per interval.
        gradual = pretrained and finetune.unfreeze_every > 0
        self.unfrozen = 1 if gradual else group_count

    @property
    def lr_scales(self) -> list[float]:
        """Per group, bottom up: lr / decay ** depth from the top (pretrained only); 0 while frozen."""
        decay = self.finetune.layer_lr_decay if self.pretrained else 1.0
        return [0.0 if depth >= self.unfrozen else decay ** -depth
                for depth in reversed(range(self.group_count))]

    @property
    def should_stop(self) -> bool:
        return self.stale_evaluations >= self.finetune.patience

    def parameter_groups(self, model: nn.Module, config: TrainConfig) -> list[dict[str, Any]]:
        """One AdamW group per layer group of the classifier, bottom up."""
        return [{"params": params, "weight_decay": config.weight_decay} for params in model.layer_groups()]

    def _batches(self, batches: LabelledBatches, epoch: int) -> list:
        return batches.epoch(epoch)[self.dist.rank::self.dist.world_size]

    def train_loss(self, model: nn.Module, device: torch.device, precision: str) -> tuple[torch.Tensor, int]:
        """Mean cross-entropy on the next batch (and its token count)."""
        if self._epoch_batches is None or self.batch_index >= len(self._epoch_batches):
            if self._epoch_batches is not None:
                self.epoch, self.batch_index = self.epoch + 1, 0
            self._epoch_batches = self._batches(self.train, self.epoch)
        ids, lengths, labels = self._epoch_batches[self.batch_index]
        self.batch_index += 1
        with autocast(precision, device):
            logits = model(ids.to(device), lengths)
        return F.cross_entropy(logits.float(), labels.to(device)), int(lengths.sum())

    @torch.no_grad()
    def evaluate(self, model: nn.Module, device: torch.device, dist: Distributed) -> dict[str, float]:
        """Validation loss and accuracy; counts evaluations for unfreezing and early stopping."""
        model.eval()
        total_loss, correct, count = 0.0, 0, 0
        for ids, lengths, labels in self._batches(self.validation, 0):
            logits = model(ids.to(device), lengths).float()
            labels = labels.to(device)
            total_loss += F.cross_entropy(logits, labels, reduction="sum").item()
            correct += int((logits.argmax(dim=1) == labels).sum())
            count += len(labels)
        model.train()
        total_loss, correct, count = dist.sum([total_loss, float(correct), float(count)], device)
        accuracy = correct / count
        self.evaluations += 1
        if accuracy > self.best_accuracy:
            self.best_accuracy, self.stale_evaluations = accuracy, 0
        else:
            self.stale_evaluations += 1
        if self.finetune.unfreeze_every and self.evaluations % self.finetune.unfreeze_every == 0:
            self.unfrozen = min(self.group_count, self.unfrozen + 1)
        return {"val_loss": total_loss / count, "accuracy": accuracy, "val_examples": count,
                "unfrozen_groups": self.unfrozen}

    @staticmethod
    def objective(metrics: dict[str, float]) -> float:
        """Lower is better: minus the validation accuracy."""
        return -metrics["accuracy"]

    def state_dict(self) -> dict[str, Any]:
        """Data position, unfreezing and early-stopping counters."""
        return {"epoch": self.epoch, "batch_index": self.batch_index, "evaluations": self.evaluations,
                "stale_evaluations": self.stale_evaluations, "best_accuracy": self.best_accuracy,
                "unfrozen": self.unfrozen, "started": self._epoch_batches is not None}

    def load_state_dict(self, data: dict[str, Any], device: torch.device) -> None:
        self.epoch, self.batch_index = data["epoch"], data["batch_index"]
        self.evaluations, self.stale_evaluations = data["evaluations"], data["stale_evaluations"]
        self.best_accuracy, self.unfrozen = data["best_accuracy"], data["unfrozen"]
        self._epoch_batches = self._batches(self.train, self.epoch) if data["started"] else None


def learning_rate_factor(step: int, progress: float, config: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to min_lr_ratio as `progress` goes from 0 to 1."""
    warmup = min(1.0, (step + 1) / config.warmup_steps) if config.warmup_steps else 1.0
    cosine = 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return warmup * (config.min_lr_ratio + (1.0 - config.min_lr_ratio) * cosine)


@contextmanager
def stop_requests() -> Iterator[dict[str, bool]]:
    """A flag set by Ctrl-C or SIGTERM, so the loop stops between steps and saves; a second
    Ctrl-C interrupts at once."""
    flag = {"stop": False}

    def request_stop(signum, frame):
        if flag["stop"] and signum == signal.SIGINT:
            raise KeyboardInterrupt
        if not flag["stop"]:
            # said at once: saving and the last evaluation can take a while on a big validation split
            print("\nstopping after this step: saving a checkpoint, then a last evaluation "
                  "(Ctrl-C again skips the evaluation; the checkpoint is kept)", file=sys.stderr, flush=True)
        flag["stop"] = True

    previous = {}
    try:
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, request_stop)
    except ValueError:  # not the main thread: signals stay with the caller
        pass
    try:
        yield flag
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@dataclass
class RunResult:
    """What a finished (or stopped) run reports."""

    run_dir: Path
    step: int
    stop_reason: str  # "max_steps", "time_budget", "interrupted", "early_stopping"
    metrics: dict[str, float]
    best_metrics: dict[str, float]
    elapsed: float
    tokens_per_second: float
    extra: dict[str, Any] = field(default_factory=dict)


def _rng_state(device: torch.device) -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def check_resumable(payload: dict[str, Any], configs: dict[str, dict], world_size: int) -> None:
    """Refuse to resume a run whose checkpoint does not match this model or job."""
    saved_model = payload.get("configs", {}).get("model", {})
    differences = [f"{key} {saved_model.get(key)} vs {value}"
                   for key, value in configs["model"].items() if saved_model.get(key) != value]
    if differences:
        raise CheckpointError(f"cannot resume from {payload['path']}: it holds another model shape "
                              f"({'; '.join(differences)}); nothing was overwritten; resume with the "
                              f"same model flags or choose a new --out")
    saved_world = len(payload["ranks"])
    if saved_world != world_size:
        raise CheckpointError(f"cannot resume from {payload['path']}: it was written by {saved_world} "
                              f"processes and this job has {world_size}; use --nproc-per-node {saved_world}")


@contextmanager
def run_folder_lock(run_dir: Path, dist: Distributed) -> Iterator[None]:
    """One writer per run folder: rank 0 holds an exclusive flock on the folder itself while the block
    runs. The kernel drops it when the process ends, however it ends, so a killed run never blocks
    the next; every rank learns the outcome, so none waits on a refused run."""
    descriptor = None
    if dist.is_main:
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(run_dir, os.O_RDONLY)
        except OSError as error:
            raise ConfigError(f"cannot use --out {run_dir} as a run folder ({error.strerror or error}); "
                              f"choose another --out") from error
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            descriptor = None
    if not dist.gather(descriptor is not None)[0]:
        raise TrainingError(f"run folder {run_dir} is in use by another textgen train that is still "
                            f"running; wait for it to finish (or stop it), or choose another --out")
    try:
        yield
    finally:
        if descriptor is not None:
            os.close(descriptor)


def fit(model: nn.Module, task: Any, config: TrainConfig, run_dir: Path, configs: dict[str, dict],
        checkpoint_extra: dict[str, Any], device: torch.device, precision: str,
        reporter: Reporter | None = None, dist: Distributed | None = None) -> RunResult:
    """Train `model` on `task` until --max-steps, --time-budget, early stopping or Ctrl-C; evaluate
    and save last.pt (and best.pt on improvement) in `run_dir`. `configs` go into config.json.
    Refuses a run folder that another live run holds."""
    dist = dist or Distributed()
    with run_folder_lock(Path(run_dir), dist):
        return _fit(model, task, config, Path(run_dir), configs, checkpoint_extra, device, precision,
                    reporter or SilentReporter(), dist)


def _fit(model: nn.Module, task: Any, config: TrainConfig, run_dir: Path, configs: dict[str, dict],
         checkpoint_extra: dict[str, Any], device: torch.device, precision: str, reporter: Reporter,
         dist: Distributed) -> RunResult:
    model.to(device)
    trained = nn.parallel.DistributedDataParallel(model) if dist.world_size > 1 else model
    optimizer = torch.optim.AdamW(task.parameter_groups(model, config), lr=config.lr,
                                  fused=device.type == "cuda")
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")

    step, elapsed_before, best, best_metrics, saved_step = 0, 0.0, math.inf, {}, None
    last_path, best_path = run_dir / "last.pt", run_dir / "best.pt"
    if config.resume:
        payload = load_checkpoint(last_path)
        check_resumable(payload, configs, dist.world_size)
        model.load_state_dict(payload["model"])
        optimizer.load_state_dict(payload["optimizer"])
        scaler.load_state_dict(payload["scaler"])
        rank_state = payload["ranks"][dist.rank]
        task.load_state_dict(rank_state["task"], device)
        _set_rng_state(rank_state["rng"], device)
        step, elapsed_before = payload["step"], payload["elapsed"]
        best, best_metrics, saved_step = payload["best"], payload["best_metrics"], step
    elif dist.is_main:
        (run_dir / "config.json").write_text(json.dumps(configs, indent=2) + "\n")
        (run_dir / "metrics.jsonl").write_text("")

    def log(record: dict[str, Any]) -> None:
        if dist.is_main:
            with open(run_dir / "metrics.jsonl", "a") as file:
                file.write(json.dumps(record) + "\n")

    def checkpoint_payload(metrics: dict[str, float]) -> dict[str, Any]:
        # Every rank's data position and RNG, gathered so any rank count resumes exactly.
        ranks = dist.gather({"task": task.state_dict(), "rng": _rng_state(device)})
        return {"kind": task.kind, "configs": configs, **checkpoint_extra,
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scaler": scaler.state_dict(), "ranks": ranks, "step": step,
                "elapsed": elapsed_before + (time.perf_counter() - started),
                "metrics": metrics, "best": best, "best_metrics": best_metrics}

    def save(path: Path, metrics: dict[str, float]) -> None:
        nonlocal saved_step
        payload = checkpoint_payload(metrics)  # collective: every rank takes part
        if dist.is_main:
            save_checkpoint(path, payload)
        saved_step = step

    def evaluate() -> None:
        nonlocal best, best_metrics, last_eval, evaluated_at
        last_eval, evaluated_at = task.evaluate(model, device, dist), step
        log({"step": step, "split": "validation", **last_eval})
        reporter.evaluated(step, last_eval)
        if task.objective(last_eval) < best:
            best, best_metrics = task.objective(last_eval), last_eval
            save(best_path, last_eval)

    max_steps, budget = config.max_steps, config.time_budget_seconds
    started = time.perf_counter()
    window_started, window_tokens, window_loss, window_steps = started, 0, 0.0, 0
    metrics: dict[str, float] = {}
    last_eval: dict[str, float] = {}
    stop_reason, evaluated_at = None, None
    reporter.start(step, max_steps, budget)
    model.train()
    with stop_requests() as stop, precision_context(precision, device):
        while True:
            elapsed = elapsed_before + time.perf_counter() - started
            progress = max(step / max_steps if max_steps else 0.0, elapsed / budget if budget else 0.0)
            # Ranks' clocks and signals differ slightly; they agree to stop together.
            out_of_time, interrupted = dist.sum([float(bool(budget) and elapsed >= budget),
                                                 float(stop["stop"])], device)
            if max_steps and step >= max_steps:
                stop_reason = "max_steps"
            elif out_of_time:
                stop_reason = "time_budget"
            elif interrupted:
                stop_reason = "interrupted"
            elif getattr(task, "should_stop", False):
                stop_reason = "early_stopping"
            if stop_reason:
                break

            factor = learning_rate_factor(step, progress, config)
            for group, scale in zip(optimizer.param_groups, task.lr_scales):
                group["lr"] = config.lr * factor * scale
            loss, tokens = task.train_loss(trained, device, precision)
            loss_value = loss.item()
            if not math.isfinite(loss_value):
                kept = (f"the last good checkpoint is {last_path} from step {saved_step}"
                        if saved_step is not None else "no checkpoint had been written yet")
                raise TrainingError(f"the training loss became {loss_value} at step {step + 1}; "
                                    f"stopped there and {kept}; lower --lr or use --precision fp32")
            scaler.scale(loss).backward()
            if config.grad_clip:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            step += 1

            window_tokens += tokens * dist.world_size
            window_loss += loss_value
            window_steps += 1
            if step % config.log_interval == 0 or step == 1:
                now = time.perf_counter()
                metrics = {"loss": window_loss / window_steps, "lr": config.lr * factor,
                           "tokens_per_s": window_tokens / max(now - window_started, 1e-9)}
                log({"step": step, "elapsed": round(elapsed_before + now - started, 3), **metrics})
                window_started, window_tokens, window_loss, window_steps = now, 0, 0.0, 0
            reporter.step(step, progress, {"loss": loss_value, **{k: v for k, v in metrics.items() if k != "loss"}})

            if step % config.eval_interval == 0:
                evaluate()
            if step % config.checkpoint_interval == 0:
                save(last_path, last_eval)

        if stop_reason == "interrupted" and saved_step != step:
            # Saved before the last evaluation, which can take a minute: a second Ctrl-C then loses nothing.
            save(last_path, last_eval)
        if evaluated_at != step:
            evaluate()
        save(last_path, last_eval)
    elapsed = elapsed_before + time.perf_counter() - started
    result = RunResult(run_dir, step, stop_reason, last_eval, best_metrics, elapsed,
                       metrics.get("tokens_per_s", 0.0))
    log({"step": step, "event": "stop", "reason": stop_reason, "elapsed": round(elapsed, 3)})
    reporter.finish(result.__dict__)
    return result

