"""The training loop: warm-up + cosine schedule, evaluation and the policy that follows it,
checkpoints and exact resume, stop signals, one writer per run folder.

The loop never knows which corpus or which cell it trains: it receives a model, a task (batches,
loss and evaluation for language modelling or classification, see `tasks`) and a `TrainConfig`;
precision and distribution come from `precision` and `distributed`.
"""

from __future__ import annotations

import fcntl
import json
import logging
import math
import os
import shutil
import signal
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Protocol

import torch
from torch import nn

from textgen.nn.checkpoint import check_schema, load_checkpoint, save_checkpoint
from textgen.config import TrainConfig
from textgen.training.distributed import Distributed
from textgen.errors import CheckpointError, ConfigError, TrainingError
from textgen.nn.precision import precision_context

log = logging.getLogger("textgen")


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


# What a run writes in its folder; `lm` holds a classifier's language-model stage, REPLACED the run
# that --overwrite replaces, kept until the new run's first checkpoint is written.
RUN_FILES = ("best.pt", "last.pt", "config.json", "metrics.jsonl")
REPLACED = ".replaced"


def _written_by_textgen(path: Path) -> bool:
    if path.name in ("lm", REPLACED):
        return path.is_dir()
    if path.name == "config.json":  # a name users choose too: textgen's holds the run's configs
        try:
            return "train" in json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, TypeError):
            return False
    return path.name in RUN_FILES or path.name.endswith((".pt.tmp", ".pt.damaged"))


def check_run_folder(run_dir: Path, config: TrainConfig) -> None:
    """Refuse an --out that is not a folder, that holds files textgen did not write, or that holds a
    trained run which neither --resume nor --overwrite names."""
    try:
        if not run_dir.exists():
            return
        if not run_dir.is_dir():
            raise ConfigError(f"--out {run_dir} is a file, not a run folder; choose another --out")
        foreign = sorted(entry.name for entry in run_dir.iterdir() if not _written_by_textgen(entry))
    except OSError as error:  # a name too long, a folder that cannot be read
        raise ConfigError(f"cannot use {run_dir} as a run folder ({error.strerror or error}); choose another "
                          f"--out") from error
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise ConfigError(f"--out {run_dir} holds files textgen did not write ({shown}); training there could "
                          f"replace them; choose a new or empty --out")
    trained = [name for name in ("last.pt", "best.pt", f"{REPLACED}/last.pt") if (run_dir / name).exists()]
    if trained and not (config.resume or config.overwrite):
        raise ConfigError(f"--out {run_dir} holds a trained run ({', '.join(trained)}); add --resume to continue "
                          f"it, --overwrite to start again (its files are replaced once the new run's first "
                          f"checkpoint is written), or choose another --out")


# what a checkpoint written by the loop holds to continue exactly, besides its configs and ranks
TRAINING_STATE = ("optimizer", "scaler", "step", "elapsed", "best", "best_metrics")


def resume_checkpoint(run_dir: Path, kind: str, dist: Distributed) -> dict[str, Any]:
    """The run's last.pt, to resume from; when it is damaged and best.pt is intact, best.pt takes its
    place (said in a log line; the damaged file is kept as last.pt.damaged)."""
    last, best = run_dir / "last.pt", run_dir / "best.pt"

    def training_state(path: Path) -> dict[str, Any]:
        payload = load_checkpoint(path, kind=kind)
        check_schema(payload, path)
        configs, ranks = payload.get("configs"), payload.get("ranks")
        if not (isinstance(configs, dict) and all(isinstance(configs.get(name), dict) for name in ("data", "model",
                "train")) and isinstance(ranks, list) and ranks and all(key in payload for key in TRAINING_STATE)):
            raise CheckpointError(f"cannot resume from {path}: it holds no training state (an exported or "
                                  f"hand-made checkpoint); pass it to --init-from instead, or choose another --out")
        return payload

    try:
        return training_state(last)
    except CheckpointError as error:
        if not (last.is_file() and best.is_file()):
            raise
        damaged = error
    try:
        payload = training_state(best)
    except CheckpointError:
        raise damaged from None
    log.warning("%s cannot be used (%s); resuming from %s, step %d, instead; the damaged file is kept as "
                "last.pt.damaged", last, str(damaged).split("; ")[0], best, payload["step"])
    if dist.is_main:
        os.replace(last, last.with_name("last.pt.damaged"))
        shutil.copyfile(best, last)
    dist.barrier()
    return payload


@contextmanager
def run_folder_lock(run_dir: Path, dist: Distributed) -> Iterator[None]:
    """One writer per run folder: rank 0 holds an exclusive flock on the folder itself while the block
    runs. The kernel drops it when the process ends, however it ends, so a killed run never blocks
    the next; every rank learns the outcome, so none waits on a refused run."""
    descriptor = None
    # the topmost folder this run makes, and the run files there before it: a run that fails before
    # its first checkpoint removes what it wrote, and nothing else
    created = next((folder for folder in reversed([run_dir, *run_dir.parents]) if not folder.exists()), None)
    there_before = {name for name in RUN_FILES if (run_dir / name).exists()}
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
    except BaseException:
        if dist.is_main:
            _remove_unsaved_run(run_dir, created, there_before)
        raise
    finally:
        if descriptor is not None:
            os.close(descriptor)


def _remove_unsaved_run(run_dir: Path, created: Path | None, there_before: set[str]) -> None:
    """Undo a run that failed before its first checkpoint: the run files it wrote go, one by one, then
    each folder it made, only while empty, up to `created`. Whatever else is there by then (a file
    someone saved, another run's folder) stays, and so do the folders that hold it."""
    written = [run_dir / name for name in RUN_FILES if name not in there_before and (run_dir / name).exists()]
    if any(path.suffix == ".pt" for path in written):
        return  # it saved a checkpoint: a run to keep
    for path in written:
        path.unlink(missing_ok=True)
    if created is None:
        return
    for folder in [run_dir, *run_dir.parents]:
        try:
            folder.rmdir()
        except OSError:  # not empty (or not ours to remove): it stays, and so do the folders above it
            return
        if folder == created:
            return


def fit(model: nn.Module, task: Any, config: TrainConfig, run_dir: Path, configs: dict[str, dict],
        checkpoint_extra: dict[str, Any], device: torch.device, precision: str,
        reporter: Reporter | None = None, dist: Distributed | None = None) -> RunResult:
    """Train `model` on `task` until --max-steps, --time-budget, early stopping or Ctrl-C; evaluate
    and save last.pt (and best.pt on improvement) in `run_dir`. `configs` go into config.json.
    Refuses a run folder that another live run holds."""
    dist = dist or Distributed()
    with run_folder_lock(Path(run_dir), dist):
        check_run_folder(Path(run_dir), config)
        loop = _Loop(model, task, config, Path(run_dir), configs, checkpoint_extra, device, precision,
                     reporter or SilentReporter(), dist)
        try:
            return loop.run()
        except BaseException:
            loop.restore_replaced()
            raise


class _Loop:
    """One `fit`: the model, optimizer and task, and the run's position between steps (step, time,
    the best objective so far, the steps last saved and evaluated)."""

    def __init__(self, model: nn.Module, task: Any, config: TrainConfig, run_dir: Path, configs: dict[str, dict],
                 checkpoint_extra: dict[str, Any], device: torch.device, precision: str, reporter: Reporter,
                 dist: Distributed):
        self.model, self.task, self.config, self.run_dir = model, task, config, run_dir
        self.configs, self.checkpoint_extra, self.device, self.precision = configs, checkpoint_extra, device, precision
        self.reporter, self.dist = reporter, dist
        model.to(device)
        self.trained = nn.parallel.DistributedDataParallel(model) if dist.world_size > 1 else model
        self.optimizer = torch.optim.AdamW(task.parameter_groups(model, config), lr=config.lr,
                                           fused=device.type == "cuda")
        self.scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
        self.step, self.elapsed_before, self.best, self.best_metrics, self.saved_step = 0, 0.0, math.inf, {}, None
        self.last_eval: dict[str, float] = {}
        self.evaluated_at: int | None = None
        self.last_path, self.best_path = run_dir / "last.pt", run_dir / "best.pt"
        self.replaced: Path | None = None  # the run --overwrite replaces, until this one's first checkpoint
        self.started = time.perf_counter()

    def resume_or_start(self) -> None:
        """Continue from last.pt with --resume (refusing another model or job), else start the run's files."""
        if self.config.resume:
            payload = load_checkpoint(self.last_path)
            try:
                check_resumable(payload, self.configs, self.dist.world_size)
                self.model.load_state_dict(payload["model"])
                self.optimizer.load_state_dict(payload["optimizer"])
                self.scaler.load_state_dict(payload["scaler"])
                rank_state = payload["ranks"][self.dist.rank]
                self.task.load_state_dict(rank_state["task"], self.device)
                _set_rng_state(rank_state["rng"], self.device)
                self.step, self.elapsed_before = int(payload["step"]), float(payload["elapsed"])
                self.best, self.best_metrics, self.saved_step = payload["best"], payload["best_metrics"], self.step
                if self.dist.is_main:  # what this resumed run uses (a longer --max-steps, a new --lr), said at once
                    _write_atomically(self.run_dir / "config.json", json.dumps(self.configs, indent=2) + "\n")
            except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as error:
                raise CheckpointError(f"cannot resume from {self.last_path}: it lacks a usable training state "
                                      f"({type(error).__name__}: {str(error)[:100]}); resume from a last.pt written "
                                      f"by textgen train, or start again with --overwrite") from error
        elif self.dist.is_main:
            self.replaced = self.run_dir / REPLACED
            if self.last_path.exists() or self.best_path.exists():  # --overwrite: the old run moves aside
                shutil.rmtree(self.replaced, ignore_errors=True)
                self.replaced.mkdir()
                for name in RUN_FILES:
                    if (self.run_dir / name).exists():
                        os.replace(self.run_dir / name, self.replaced / name)
            (self.run_dir / "config.json").write_text(json.dumps(self.configs, indent=2) + "\n")
            (self.run_dir / "metrics.jsonl").write_text("")

    def restore_replaced(self) -> None:
        """Put back the run that --overwrite moved aside, when this one failed before its first checkpoint."""
        if self.replaced is not None and self.replaced.is_dir():
            for path in self.replaced.iterdir():
                os.replace(path, self.run_dir / path.name)
            self.replaced.rmdir()

    def log(self, record: dict[str, Any]) -> None:
        if self.dist.is_main:
            with open(self.run_dir / "metrics.jsonl", "a") as file:
                file.write(json.dumps(record) + "\n")

    def save(self, path: Path, metrics: dict[str, float]) -> None:
        # Every rank's data position and RNG, gathered (a collective) so any rank count resumes exactly.
        ranks = self.dist.gather({"task": self.task.state_dict(), "rng": _rng_state(self.device)})
        payload = {"kind": self.task.kind, "configs": self.configs, **self.checkpoint_extra,
                   "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                   "scaler": self.scaler.state_dict(), "ranks": ranks, "step": self.step,
                   "elapsed": self.elapsed_before + (time.perf_counter() - self.started),
                   "metrics": metrics, "best": self.best, "best_metrics": self.best_metrics}
        if self.dist.is_main:
            save_checkpoint(path, payload)
            if self.replaced is not None:  # the new run is safely on disk: the one it replaces goes
                shutil.rmtree(self.replaced, ignore_errors=True)
                self.replaced = None
        self.saved_step = self.step

    def evaluate(self) -> None:
        """Evaluate, apply the task's policy that follows (unfreezing, patience), and save best.pt on improvement."""
        metrics = self.task.evaluate(self.model, self.device, self.dist)
        self.last_eval, self.evaluated_at = {**metrics, **self.task.after_evaluation(metrics)}, self.step
        self.log({"step": self.step, "split": "validation", **self.last_eval, "val_loss_unit": self.task.loss_unit})
        self.reporter.evaluated(self.step, self.last_eval)
        if self.task.objective(self.last_eval) < self.best:
            self.best, self.best_metrics = self.task.objective(self.last_eval), {**self.last_eval, "step": self.step}
            self.save(self.best_path, self.last_eval)

    def stop_reason(self, elapsed: float, stop_requested: bool) -> str | None:
        """Why to stop before the next step, if at all; every rank gets the same answer."""
        max_steps, budget = self.config.max_steps, self.config.time_budget_seconds
        # Ranks' clocks and signals differ slightly; they agree to stop together.
        out_of_time, interrupted = self.dist.sum([float(bool(budget) and elapsed >= budget),
                                                  float(stop_requested)], self.device)
        if max_steps and self.step >= max_steps:
            return "max_steps"
        if out_of_time:
            return "time_budget"
        if interrupted:
            return "interrupted"
        if getattr(self.task, "should_stop", False):
            return "early_stopping"
        return None

    def train_step(self, factor: float) -> tuple[float, int]:
        """One optimizer step at `factor` times the peak learning rate: the loss and its token count."""
        config = self.config
        for group, scale in zip(self.optimizer.param_groups, self.task.lr_scales):
            group["lr"] = config.lr * factor * scale
        loss, tokens = self.task.train_loss(self.trained, self.device, self.precision)
        loss_value = loss.item()
        if not math.isfinite(loss_value):
            kept = (f"the last good checkpoint is {self.last_path} from step {self.saved_step}"
                    if self.saved_step is not None else "no checkpoint had been written yet")
            raise TrainingError(f"the training loss became {loss_value} at step {self.step + 1}; "
                                f"stopped there and {kept}; lower --lr or use --precision fp32")
        self.scaler.scale(loss).backward()
        if config.grad_clip:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), config.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        return loss_value, tokens

    def run(self) -> RunResult:
        """Steps until a stop, evaluating and saving at their intervals and once more at the end."""
        self.resume_or_start()
        config, max_steps, budget = self.config, self.config.max_steps, self.config.time_budget_seconds
        self.started = time.perf_counter()
        window_started, window_tokens, window_loss, window_steps = self.started, 0, 0.0, 0
        metrics: dict[str, float] = {}
        self.reporter.start(self.step, max_steps, budget)
        self.model.train()
        with stop_requests() as stop, precision_context(self.precision, self.device):
            while True:
                elapsed = self.elapsed_before + time.perf_counter() - self.started
                progress = max(self.step / max_steps if max_steps else 0.0, elapsed / budget if budget else 0.0)
                stop_reason = self.stop_reason(elapsed, stop["stop"])
                if stop_reason:
                    break
                factor = learning_rate_factor(self.step, progress, config)
                loss_value, tokens = self.train_step(factor)
                window_tokens += tokens * self.dist.world_size
                window_loss += loss_value
                window_steps += 1
                if self.step % config.log_interval == 0 or self.step == 1:
                    now = time.perf_counter()
                    metrics = {"loss": window_loss / window_steps, "lr": config.lr * factor,
                               "tokens_per_s": window_tokens / max(now - window_started, 1e-9)}
                    self.log({"step": self.step, "elapsed": round(self.elapsed_before + now - self.started, 3),
                              **metrics, **self.task.loss_record(metrics["loss"])})
                    window_started, window_tokens, window_loss, window_steps = now, 0, 0.0, 0
                self.reporter.step(self.step, progress,
                                   {"loss": loss_value, **{k: v for k, v in metrics.items() if k != "loss"}})
                if self.step % config.eval_interval == 0:
                    self.evaluate()
                if self.step % config.checkpoint_interval == 0:
                    self.save(self.last_path, self.last_eval)

            if stop_reason == "interrupted" and self.saved_step != self.step:
                # Saved before the last evaluation, which can take a minute: a second Ctrl-C then loses nothing.
                self.save(self.last_path, self.last_eval)
            if self.evaluated_at != self.step:
                self.evaluate()
            self.save(self.last_path, self.last_eval)
        elapsed = self.elapsed_before + time.perf_counter() - self.started
        result = RunResult(self.run_dir, self.step, stop_reason, self.last_eval, self.best_metrics, elapsed,
                           metrics.get("tokens_per_s", 0.0))
        self.log({"step": self.step, "event": "stop", "reason": stop_reason, "elapsed": round(elapsed, 3)})
        self.reporter.finish(result.__dict__)
        return result


def _write_atomically(path: Path, text: str) -> None:
    """`text` into `path` through a temporary file and a rename: a crash leaves the old file or the new."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)
