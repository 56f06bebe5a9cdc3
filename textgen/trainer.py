"""The training loop: warm-up + cosine schedule, evaluation and the policy that follows it,
checkpoints and exact resume, stop signals, one writer per run folder.

The loop never knows which corpus or which cell it trains: it receives a model, a task (batches,
loss and evaluation for language modelling or classification, see `tasks`) and a `TrainConfig`;
precision and distribution come from `precision` and `distributed`.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import signal
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Protocol

import torch
from torch import nn

from textgen.checkpoint import load_checkpoint, save_checkpoint
from textgen.config import TrainConfig
from textgen.distributed import Distributed
from textgen.errors import CheckpointError, ConfigError, TrainingError
from textgen.precision import precision_context


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
        last_eval = task.evaluate(model, device, dist)
        last_eval, evaluated_at = {**last_eval, **task.after_evaluation(last_eval)}, step
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

