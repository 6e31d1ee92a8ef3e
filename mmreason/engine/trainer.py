"""One accelerate training loop for every method: any ``nn.Module`` with ``loss(batch) -> {"loss": tensor, ...}``.

The same code runs single-process (the default) and under ``accelerate launch`` / ``torchrun`` (DDP): the
trainer builds its own :class:`accelerate.Accelerator` from the :class:`~mmreason.engine.config.TrainConfig`
unless one is passed, prepares the model, optimizer and data loader with it, accumulates gradients with
``accelerator.accumulate``, clips with ``accelerator.clip_grad_norm_`` and autocasts per ``mixed_precision``.

Exact resume. The data order is a pure function of ``(seed, pass index)``: an :class:`EpochPermutationSampler`
permutes the dataset once per pass over it, accelerate shards each batch sequence across processes, and the
trainer records ``(pass index, batches consumed in the pass)``. Resuming loads the newest checkpoint (weights,
optimizer, scheduler, counters, python/numpy/torch RNG states of every process), skips the consumed batches of
the partial pass and continues; for map-style datasets loaded in the main process (``num_workers=0``) or whose
randomness is a function of the sample index, the following losses are identical to an uninterrupted run.

Epochs. ``steps_per_epoch = 0``: an epoch is one pass over the loader (``ceil(batches / grad_accum_steps)``
optimizer steps, the last accumulation cut short at the end of the pass). ``steps_per_epoch > 0``: an epoch is
that many optimizer steps, cycling the loader (episodic few-shot data). ``max_steps > 0`` overrides
``epochs x steps_per_epoch`` as the length of training and of the learning-rate schedule.

Example::

    trainer = Trainer(model, cfg.train, train_set, evaluate=lambda m, acc: {"acc": ...}, run_dir="runs/x",
                      config=cfg)
    result = trainer.fit()          # result.global_step, result.history, result.eval_history

Batch size and warm-up. ``train.global_batch_size > 0`` fixes the samples per optimizer step over all
processes; the gradient accumulation is derived as ``global_batch_size / (batch_size x processes)``
(:func:`~mmreason.engine.schedule.grad_accum_steps_for`), and ``train.warmup_epochs`` converts to optimizer steps
with the run's steps per epoch, so one process and N processes follow the same optimizer-step schedule.

Resume. Before anything is built, :func:`~mmreason.engine.runs.plan_run` compares the resolved config with the
run folder's (``train.resume``: ``auto`` fails listing changed keys, ``continue`` keeps the run's config and records
the allowed changes in its history, ``no`` starts a new folder). Every resume logs "resumed from step N of RUN".

Interrupts. Ctrl-C (SIGINT) during :meth:`Trainer.fit` finishes the current optimizer step on every process,
saves a checkpoint and raises :class:`TrainingInterrupted` (a ``KeyboardInterrupt``) saying where; a second
Ctrl-C at least two seconds later stops at once.

Distributed evaluation: run the same ``evaluate`` on every process over a loader from
:func:`prepare_eval_loader` and combine per-sample tensors with :func:`gather_for_eval`
(``accelerator.gather_for_metrics``), which drops the samples accelerate repeated to even out the shards.
"""
from __future__ import annotations

import json
import logging
import math
import os
import random
import shutil
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, IterableDataset, Sampler

from mmreason.config import option
from mmreason.engine.checkpoint import (CHECKPOINTS_DIR, checkpoint_name, load_checkpoint, prune_checkpoints,
                                        publish_dir, read_trainer_state, save_peft_adapters, temp_dir_for,
                                        trainable_state_dict, write_checkpoint_dir)
from mmreason.engine.config import TrainConfig
from mmreason.engine.runs import ResumeError, plan_run, read_history
from mmreason.engine.schedule import build_scheduler, grad_accum_steps_for, steps_per_pass, warmup_steps_for
from mmreason.utils.seed import seed_everything

log = logging.getLogger("mmreason.engine")

METRICS_NAME = "metrics.jsonl"
STATE_FORMAT = 1


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped training after a completed optimizer step; a checkpoint of that step was saved."""


class LaunchError(ValueError):
    """The process layout is not the one the launch command asked for (e.g. accelerate started one process)."""


@dataclass
class TrainOnlyConfig:
    """The config saved in a run folder when the trainer is used without an experiment config."""

    train: TrainConfig = option(default_factory=TrainConfig, help="engine settings")


@dataclass
class TrainResult:
    """What :meth:`Trainer.fit` returns. ``history`` / ``eval_history`` hold this call's log and eval records
    (a resumed run's earlier records are in ``run_dir/metrics.jsonl``)."""

    global_step: int
    epoch: int
    history: list[dict] = field(default_factory=list)
    eval_history: list[dict] = field(default_factory=list)
    run_dir: Path | None = None
    last_checkpoint: Path | None = None
    resumed_from: Path | None = None


# ------------------------------------------------------------------------------------------------ helpers

def resolve_mixed_precision(setting: str) -> str:
    """``auto`` -> ``bf16`` on a CUDA device that supports it, else ``no``; other values pass through."""
    if setting != "auto":
        return setting
    from accelerate.utils import parse_flag_from_env

    # Decided without creating accelerate's process state, which would freeze its device choice too early.
    on_cuda = torch.cuda.is_available() and not parse_flag_from_env("ACCELERATE_USE_CPU")
    return "bf16" if on_cuda and torch.cuda.is_bf16_supported() else "no"


def check_launch() -> None:
    """Fail when accelerate's single-process launcher ran although several processes were asked for.

    ``accelerate launch --num_processes N`` without ``--multi_gpu`` (always the case with ``--cpu``, or on a machine
    with fewer than two GPUs) starts one ordinary process; it exports ``MASTER_PORT`` for the processes it does not
    start, but no ``WORLD_SIZE``.
    """
    env = os.environ
    if "ACCELERATE_USE_CPU" in env and "MASTER_PORT" in env and "WORLD_SIZE" not in env:
        raise LaunchError("accelerate launch started a single process although several were asked for (--cpu, or "
                          "--num_processes without --multi_gpu, runs one); use: accelerate launch --multi_gpu "
                          "--num_processes N -m mmreason.cli.main ... (CPU-only machines too), or unset MASTER_PORT "
                          "to train in one process")


def _use_cpu() -> bool:
    """Processes started by torchrun / ``accelerate launch --multi_gpu`` on a machine without CUDA train on the CPU
    with gloo (accelerate alone would make each of them a separate single-process run)."""
    from accelerate.utils import parse_flag_from_env

    world = int(os.environ.get("WORLD_SIZE", "1"))
    return parse_flag_from_env("ACCELERATE_USE_CPU") or (world > 1 and not torch.cuda.is_available())


def build_accelerator(train_cfg: TrainConfig, project_dir: str | os.PathLike | None = None):
    """The accelerator the trainer (and evaluation) uses when none is passed: CPU or GPU per the launch, mixed
    precision from ``train_cfg``, gradient accumulation derived for this number of processes
    (:func:`~mmreason.engine.schedule.grad_accum_steps_for`), DDP's unused-parameter search only when
    ``train.find_unused_parameters``, and the tracker of ``train.log_with`` writing under ``project_dir``."""
    from accelerate import Accelerator, DistributedDataParallelKwargs

    check_launch()
    log_with = None if train_cfg.log_with == "none" else train_cfg.log_with
    acc = Accelerator(cpu=_use_cpu(), mixed_precision=resolve_mixed_precision(train_cfg.mixed_precision),
                      log_with=log_with, project_dir=str(project_dir) if project_dir and log_with else None,
                      kwargs_handlers=[DistributedDataParallelKwargs(
                          find_unused_parameters=train_cfg.find_unused_parameters)])
    acc.gradient_accumulation_steps = grad_accum_steps_for(train_cfg, acc.num_processes)
    return acc


def build_optimizer(params: list[nn.Parameter], train_cfg: TrainConfig) -> torch.optim.Optimizer:
    if not train_cfg.decay_1d_params:  # biases and norm scales in a group without weight decay
        params = [{"params": [p for p in params if p.ndim > 1]},
                  {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0}]
    if train_cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=train_cfg.lr, betas=tuple(train_cfg.betas),
                                 weight_decay=train_cfg.weight_decay)
    if train_cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=train_cfg.lr, betas=tuple(train_cfg.betas),
                                weight_decay=train_cfg.weight_decay)
    if train_cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=train_cfg.lr, momentum=train_cfg.momentum,
                               weight_decay=train_cfg.weight_decay)
    if train_cfg.optimizer == "adamax":  # ADSM's optimiser
        return torch.optim.Adamax(params, lr=train_cfg.lr, betas=tuple(train_cfg.betas),
                                  weight_decay=train_cfg.weight_decay)
    raise ValueError(f"train.optimizer {train_cfg.optimizer!r} is not one of ['adamw', 'adam', 'adamax', 'sgd']")


def gather_for_eval(accelerator, data):
    """Concatenate per-process evaluation tensors (or nested lists/dicts of them) across processes.

    Call it inside the loop over a loader from :func:`prepare_eval_loader`; duplicates that accelerate added
    to even out the last batch are dropped, so the gathered sample count equals the dataset size. With
    ``accelerator=None`` (plain single-process evaluation) ``data`` is returned unchanged.
    """
    if accelerator is None:
        return data
    return accelerator.gather_for_metrics(data)


def prepare_eval_loader(dataset, batch_size: int, *, accelerator=None, collate_fn: Callable | None = None,
                        num_workers: int = 0) -> DataLoader:
    """An in-order evaluation loader, sharded across processes when ``accelerator`` is given."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_fn,
                        num_workers=num_workers)
    return loader if accelerator is None else accelerator.prepare_data_loader(loader)


class EpochPermutationSampler(Sampler):
    """Indices ``0..n-1`` in an order that is a pure function of ``(seed, pass_index)``.

    The trainer sets the pass with :meth:`set_pass` (deliberately not ``set_epoch``, which accelerate calls
    with its own counter), so a resumed run replays exactly the permutation of the pass it stopped in.
    """

    def __init__(self, num_samples: int, seed: int = 0, shuffle: bool = True):
        self.num_samples, self.seed, self.shuffle = int(num_samples), int(seed), shuffle
        self.pass_index = 0

    def set_pass(self, pass_index: int) -> None:
        self.pass_index = int(pass_index)

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[int]:
        if not self.shuffle:
            return iter(range(self.num_samples))
        rng = np.random.default_rng([self.seed % 2**32, self.pass_index])
        return iter(rng.permutation(self.num_samples).tolist())


def _seed_of(*parts: int) -> int:
    return int(np.random.SeedSequence([p % 2**32 for p in parts]).generate_state(1)[0])


class _DataStream:
    """Endless micro-batches, pass after pass over the prepared loader; state = (pass index, batches consumed)."""

    def __init__(self, loader, sampler: EpochPermutationSampler | None, generator: torch.Generator,
                 accelerator, seed: int):
        self.loader, self.sampler, self.generator = loader, sampler, generator
        self.accelerator, self.seed = accelerator, seed
        self.pass_index, self.batches_in_pass = 0, 0
        self._active = None
        self._iter = None

    def state_dict(self) -> dict:
        return {"pass": self.pass_index, "batches_in_pass": self.batches_in_pass}

    def load_state_dict(self, state: dict) -> None:
        self.pass_index, self.batches_in_pass = int(state["pass"]), int(state["batches_in_pass"])

    def __next__(self):
        if self._iter is None:
            self._iter = self._batches()
        return next(self._iter)

    def _batches(self):
        while True:
            if hasattr(self.loader, "set_epoch"):  # accelerate's pass counter -> dataset.set_epoch, if it has one
                self.loader.set_epoch(self.pass_index)
            if self.sampler is not None:
                self.sampler.set_pass(self.pass_index)
            # Worker seeds are drawn from this generator, not from the global RNG, so (re)starting a pass never
            # shifts the global random stream that dropout and augmentation use.
            self.generator.manual_seed(_seed_of(self.seed, self.accelerator.process_index, self.pass_index))
            loader = self.loader
            if self.batches_in_pass:
                loader = self.accelerator.skip_first_batches(self.loader, self.batches_in_pass)
            self._active = loader
            for batch in loader:
                self.batches_in_pass += 1
                yield batch
            self.pass_index, self.batches_in_pass = self.pass_index + 1, 0

    def close(self) -> None:
        """Stop mid-pass and unregister the loader from accelerate's gradient state."""
        if self._iter is not None:
            self._iter.close()
            self._iter = None
        end = getattr(self._active, "end", None)
        if callable(end):
            end()
        self._active = None


class _LossForward(nn.Module):
    """Routes ``forward(batch)`` to ``model.loss(batch)``, so DDP's gradient hooks and accelerate's autocast,
    which both wrap ``forward``, apply to the loss computation."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batch):
        return self.model.loss(batch)


class _StopRequest:
    """While active, the first SIGINT only sets ``requested`` (training stops at the next optimizer-step boundary);
    a SIGINT at least ``grace_s`` seconds later raises ``KeyboardInterrupt`` at once. Launchers forward the
    terminal's Ctrl-C to their workers, so a second signal right after the first is the same keypress."""

    def __init__(self, grace_s: float = 2.0):
        self.requested, self.grace_s = False, grace_s
        self._first = 0.0
        self._previous = None

    def _handle(self, signum, frame) -> None:
        if self.requested and time.monotonic() - self._first >= self.grace_s:
            raise KeyboardInterrupt
        if not self.requested:
            self.requested, self._first = True, time.monotonic()

    def __enter__(self) -> "_StopRequest":
        if threading.current_thread() is threading.main_thread():  # signal handlers live in the main thread
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None


def _count(n: int) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)


def _capture_rng() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _restore_rng(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def _scalar(value) -> Any:
    """A logged value as a JSON-friendly python object."""
    if isinstance(value, torch.Tensor):
        return value.item() if value.numel() == 1 else value.tolist()
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    return value


# ------------------------------------------------------------------------------------------------ trainer

class Trainer:
    """Train ``model`` (``loss(batch) -> {"loss": tensor, ...}``) on ``train_dataset`` per ``train_cfg``.

    Args:
        model: the module; only parameters with ``requires_grad=True`` are optimised and checkpointed.
        train_cfg: a :class:`TrainConfig`.
        train_dataset: a map-style dataset (shuffled by a seeded per-pass permutation) or an ``IterableDataset``
            (then ``train_cfg.steps_per_epoch`` must be > 0 unless it has a length).
        collate_fn: DataLoader collate function (default: torch's).
        evaluate: ``evaluate(model, accelerator) -> {name: float}``, run on every process (in eval mode, without
            gradients, under autocast) every ``eval_every`` steps / at epoch ends, and at the end of training.
        run_dir: the run folder (default ``train_cfg.output_dir``): ``config.json``, ``metrics.jsonl``,
            ``checkpoints/step_*``.
        config: the resolved experiment config (``config.train`` is ``train_cfg``), saved as ``config.json`` in the
            run folder and every checkpoint, and compared with the run's on a resume (see
            :mod:`mmreason.engine.runs`); without one a config holding only ``train_cfg`` is saved and compared.
        accelerator: an ``accelerate.Accelerator`` to use instead of building one (its gradient accumulation
            must equal the one derived from ``train_cfg`` for its number of processes).
    """

    def __init__(self, model: nn.Module, train_cfg: TrainConfig, train_dataset, *, collate_fn: Callable | None = None,
                 evaluate: Callable | None = None, run_dir: str | Path | None = None, config: Any = None,
                 accelerator: Any = None):
        if not callable(getattr(model, "loss", None)):
            raise TypeError(f"{type(model).__name__} has no loss(batch) method; the engine trains modules whose "
                            f"loss(batch) returns {{'loss': tensor, ...}}")
        run_dir = run_dir if run_dir not in (None, "") else train_cfg.output_dir
        if not run_dir:
            raise ValueError("Trainer needs a run folder: pass run_dir= or set train.output_dir")
        check_train_config(train_cfg)
        # Decide resume / continue / new folder from the run folder's config before anything expensive.
        self.plan = plan_run(config if config is not None else TrainOnlyConfig(train=train_cfg), run_dir)
        model_keys = [k for k in self.plan.ignored if not k.startswith("train.")]
        if model_keys:
            raise ResumeError(f"train.resume=continue: the model was built from a config that differs from the run "
                              f"{self.plan.run_dir} in {', '.join(model_keys)}; build it from the run's config "
                              f"(mmreason.train does)")
        if self.plan.applied or self.plan.ignored:
            train_cfg = self.plan.config.train  # the run's settings plus the changes allowed on a resume
        self.model, self.cfg, self.config = model, train_cfg, self.plan.config
        self.evaluate = evaluate
        self.run_dir = self.plan.run_dir

        self.accelerator = (accelerator if accelerator is not None
                            else build_accelerator(train_cfg, project_dir=self.run_dir))
        acc = self.accelerator
        self.grad_accum_steps = grad_accum_steps_for(train_cfg, acc.num_processes)
        if acc.gradient_accumulation_steps != self.grad_accum_steps:
            raise ValueError(f"the accelerator accumulates {acc.gradient_accumulation_steps} micro-batches but the "
                             f"train config asks for {self.grad_accum_steps} with {acc.num_processes} process(es)")
        self.is_main = acc.is_main_process
        # Each process its own stream for dropout/augmentation; the data order itself is shared and sharded.
        seed_everything(train_cfg.seed + self.accelerator.process_index)

        self.params = [p for p in model.parameters() if p.requires_grad]
        if not self.params:
            raise ValueError(f"{type(model).__name__} has no trainable parameters (requires_grad=True)")
        optimizer = build_optimizer(self.params, train_cfg)

        loader, self.sampler, self._loader_generator = self._build_loader(train_dataset, collate_fn)
        self._wrapped, self.optimizer, self.train_loader = self.accelerator.prepare(
            _LossForward(model), optimizer, loader)

        self.steps_per_epoch = self._steps_per_epoch(train_dataset)
        self.total_steps = train_cfg.max_steps if train_cfg.max_steps > 0 else train_cfg.epochs * self.steps_per_epoch
        if self.total_steps <= 0:
            raise ValueError(f"nothing to train: train.max_steps={train_cfg.max_steps}, train.epochs={train_cfg.epochs}")
        self.warmup_steps = warmup_steps_for(train_cfg, self.steps_per_epoch)
        # Not prepared: accelerate would step it once per process; here one step = one optimizer step.
        self.scheduler = build_scheduler(optimizer, train_cfg, self.total_steps, self.warmup_steps)

        self.global_step, self.epoch, self.step_in_epoch = 0, 0, 0
        self.last_checkpoint: Path | None = None
        self._stream: _DataStream | None = None
        self._window: dict[str, torch.Tensor] = {}
        self._window_steps = 0

    # -------------------------------------------------------------------------------------------- setup

    def _build_loader(self, dataset, collate_fn):
        generator = torch.Generator()
        if isinstance(dataset, IterableDataset):
            sampler = None
        else:
            try:
                n = len(dataset)
            except TypeError as e:
                raise TypeError(f"the training dataset {type(dataset).__name__} has no __len__; map-style datasets "
                                f"need one (or make it an IterableDataset)") from e
            if n == 0:
                raise ValueError(f"the training dataset {type(dataset).__name__} is empty")
            sampler = EpochPermutationSampler(n, seed=self.cfg.seed, shuffle=True)
        loader = DataLoader(dataset, batch_size=self.cfg.batch_size, sampler=sampler, collate_fn=collate_fn,
                            num_workers=self.cfg.num_workers, generator=generator, drop_last=False,
                            pin_memory=self.accelerator.device.type == "cuda")
        return loader, sampler, generator

    def _steps_per_epoch(self, dataset) -> int:
        if self.cfg.steps_per_epoch > 0:
            return self.cfg.steps_per_epoch
        try:
            batches = len(self.train_loader)
        except TypeError as e:
            raise ValueError(f"the training dataset {type(dataset).__name__} has no length, so an epoch is undefined: "
                             f"set train.steps_per_epoch") from e
        if batches == 0:
            raise ValueError(f"the training dataset {type(dataset).__name__} yields no batches")
        return steps_per_pass(batches, self.grad_accum_steps)

    # -------------------------------------------------------------------------------------------- training

    def fit(self) -> TrainResult:
        """Train to ``total_steps``, resuming from the run folder's newest checkpoint per ``train.resume``."""
        acc, cfg = self.accelerator, self.cfg
        self._stream = _DataStream(self.train_loader, self.sampler, self._loader_generator, acc, cfg.seed)
        resumed_from, rank_state = self._resume()
        if self.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self._save_run_config(resumed=resumed_from is not None)
            self._describe_start()
        acc.wait_for_everyone()
        if cfg.log_with != "none":
            acc.init_trackers(cfg.log_with)
        if rank_state is not None:  # last, so nothing above can consume random numbers after the restore
            _restore_rng(rank_state["rng"])
        acc.step = 0  # checkpoints fall on optimizer-step boundaries, where accelerate's micro-step count is 0

        history, eval_history = [], []
        progress = self._progress_bar()
        self.model.train()
        try:
            with self._log_redirect(), _StopRequest() as stop:
                while self.global_step < self.total_steps:
                    step_scalars, lr = self._optimizer_step()
                    self.global_step += 1
                    self.step_in_epoch += 1
                    for k, v in step_scalars.items():
                        self._window[k] = self._window.get(k, 0.0) + v
                    self._window_steps += 1
                    epoch_end = self.step_in_epoch >= self.steps_per_epoch
                    if epoch_end:
                        self.epoch, self.step_in_epoch = self.epoch + 1, 0
                    last = self.global_step >= self.total_steps
                    progress.update(1)

                    if self.global_step % cfg.log_every == 0 or last:
                        record = self._log(lr)
                        history.append(record)
                        progress.set_postfix(loss=f"{record['loss']:.4g}", lr=f"{lr:.3g}")
                    if not last and self._stop_requested(stop):  # after the last step the run ends anyway
                        ckpt = self.save_checkpoint()
                        raise TrainingInterrupted(f"stopped at step {self.global_step} of {self.total_steps}; state "
                                                  f"saved in {ckpt}; rerun the same command to resume")
                    if self.evaluate is not None and cfg.eval_every != -1 and (
                            (cfg.eval_every > 0 and self.global_step % cfg.eval_every == 0)
                            or (cfg.eval_every == 0 and epoch_end) or last):
                        record = self._run_evaluation()
                        eval_history.append(record)
                        if self.is_main:
                            log.info("step %d: %s", self.global_step, ", ".join(
                                f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                for k, v in record["metrics"].items()))
                    if (cfg.save_every > 0 and self.global_step % cfg.save_every == 0) or (
                            cfg.save_every == 0 and epoch_end) or last:
                        self.save_checkpoint()
        finally:
            self._stream.close()
            progress.close()
            if cfg.log_with != "none":
                acc.end_training()
        return TrainResult(global_step=self.global_step, epoch=self.epoch, history=history,
                           eval_history=eval_history, run_dir=self.run_dir, last_checkpoint=self.last_checkpoint,
                           resumed_from=resumed_from)

    def _stop_requested(self, stop: _StopRequest) -> bool:
        """Whether any process got Ctrl-C; every process must agree, so all stop after the same step."""
        if self.accelerator.num_processes == 1:
            return stop.requested
        flag = torch.tensor([float(stop.requested)], device=self.accelerator.device)
        return bool(self.accelerator.reduce(flag, reduction="sum").item() > 0)

    def _log_redirect(self):
        """Route the package's log lines through tqdm while the progress bar is shown, so they do not break it."""
        import contextlib

        if not (self.is_main and self.cfg.progress):
            return contextlib.nullcontext()
        from tqdm.contrib.logging import logging_redirect_tqdm

        return logging_redirect_tqdm(loggers=[logging.getLogger("mmreason")])

    def _save_run_config(self, resumed: bool) -> None:
        """Write ``config.json``; on a resume with ``train.resume=continue`` changes, append them to its history."""
        from mmreason.config import save_config

        history = read_history(self.run_dir) if resumed else []
        if resumed and self.plan.applied:
            history.append({"step": self.global_step, "resume": "continue",
                            "changes": {k: [old, new] for k, (old, new) in self.plan.applied.items()}})
            log.info("train.resume=continue: applied %s", ", ".join(
                f"{k} {old!r} -> {new!r}" for k, (old, new) in self.plan.applied.items()))
        save_config(self.config, self.run_dir / "config.json", **({"history": history} if history else {}))

    def _describe_start(self) -> None:
        acc, cfg = self.accelerator, self.cfg
        trainable = sum(p.numel() for p in self.params)
        total = sum(p.numel() for p in self.model.parameters())
        log.info("trainable parameters: %s of %s (%.2f%%)", f"{trainable:,}", _count(total),
                 100.0 * trainable / max(total, 1))
        log.info("batch %d per step = %d per micro-batch x %d process(es) x %d accumulated; %d steps per epoch, "
                 "%d steps, warm-up %d steps", cfg.batch_size * acc.num_processes * self.grad_accum_steps,
                 cfg.batch_size, acc.num_processes, self.grad_accum_steps, self.steps_per_epoch, self.total_steps,
                 self.warmup_steps)

    def _optimizer_step(self) -> tuple[dict[str, torch.Tensor], float]:
        """Consume micro-batches until accelerate syncs gradients, then step; returns the micro-batch mean of
        every scalar the model's loss dict reports, and the learning rate this step used."""
        acc = self.accelerator
        lr = self.optimizer.param_groups[0]["lr"]
        sums: dict[str, torch.Tensor] = {}
        micro_batches = 0
        grad_norm = None
        while True:
            batch = next(self._stream)
            with acc.accumulate(self._wrapped):
                try:
                    out = self._wrapped(batch)
                except RuntimeError as e:
                    if "find_unused_parameters" in str(e):
                        from mmreason.config import ConfigError

                        raise ConfigError(f"{type(self.model).__name__} left some trainable parameters without a "
                                           f"gradient on a multi-process run: set train.find_unused_parameters=true "
                                           f"({str(e).splitlines()[0]})") from e
                    raise
                loss = _loss_of(out, type(self.model).__name__)
                acc.backward(loss)
                if acc.sync_gradients and self.cfg.grad_clip > 0:
                    grad_norm = acc.clip_grad_norm_(self.params, self.cfg.grad_clip)  # norm before clipping
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
            for k, v in out.items():
                if isinstance(v, torch.Tensor) and v.numel() == 1:
                    v = v.detach().float().reshape(())
                elif isinstance(v, (int, float)) and not isinstance(v, bool):
                    v = torch.tensor(float(v), device=acc.device)
                else:
                    continue
                sums[k] = sums[k] + v if k in sums else v
            micro_batches += 1
            if acc.sync_gradients:
                break
        if not self.optimizer.step_was_skipped:  # fp16 overflow steps leave the schedule where it is
            self.scheduler.step()
        scalars = {k: v / micro_batches for k, v in sums.items()}
        if grad_norm is not None:
            scalars["grad_norm"] = grad_norm.detach().float().reshape(())
        return scalars, lr

    def _log(self, lr: float) -> dict:
        """Average the window's scalars over steps and processes; one record to history and metrics.jsonl."""
        keys = sorted(self._window)
        values = torch.stack([self._window[k].to(self.accelerator.device) for k in keys]) / self._window_steps
        values = self.accelerator.reduce(values, reduction="mean").tolist()
        self._window, self._window_steps = {}, 0
        scalars = dict(zip(keys, values))
        if not math.isfinite(scalars.get("loss", 0.0)):
            raise FloatingPointError(f"non-finite loss {scalars['loss']} at step {self.global_step} "
                                     f"(run {self.run_dir})")
        record = {"event": "train", "step": self.global_step,
                  "epoch": self.epoch + self.step_in_epoch / self.steps_per_epoch, "lr": lr, **scalars}
        self._write_metrics(record)
        if self.cfg.log_with != "none":
            self.accelerator.log({f"train/{k}": v for k, v in {"lr": lr, **scalars}.items()}, step=self.global_step)
        return record

    def _run_evaluation(self) -> dict:
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad(), self.accelerator.autocast():
                metrics = self.evaluate(self.model, self.accelerator) or {}
        finally:
            self.model.train(was_training)
        record = {"event": "eval", "step": self.global_step,
                  "epoch": self.epoch + self.step_in_epoch / self.steps_per_epoch,
                  "metrics": {k: _scalar(v) for k, v in metrics.items()}}
        self._write_metrics(record)
        if self.cfg.log_with != "none":
            self.accelerator.log({f"eval/{k}": v for k, v in record["metrics"].items()
                                  if isinstance(v, (int, float)) and not isinstance(v, bool)}, step=self.global_step)
        return record

    def _write_metrics(self, record: dict) -> None:
        if self.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            with open(self.run_dir / METRICS_NAME, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")

    def _progress_bar(self):
        from tqdm.auto import tqdm

        return tqdm(total=self.total_steps, initial=self.global_step, desc=self.run_dir.name, dynamic_ncols=True,
                    disable=not (self.is_main and self.cfg.progress))

    # -------------------------------------------------------------------------------------------- checkpoints

    def _rank_state(self) -> dict:
        window = {k: float(v) for k, v in self._window.items()}
        return {"rng": _capture_rng(), "log_window": window, "log_window_steps": self._window_steps}

    def save_checkpoint(self) -> Path:
        """Write ``checkpoints/step_{global_step:07d}`` atomically: the main process writes the weights, config
        and trainer state, every other process its RNG state, all into a temporary folder renamed at the end."""
        acc = self.accelerator
        final = self.run_dir / CHECKPOINTS_DIR / checkpoint_name(self.global_step)
        tmp = temp_dir_for(final)
        if self.is_main:
            if tmp.exists():
                shutil.rmtree(tmp)  # left over from a crash
            tmp.mkdir(parents=True)
        acc.wait_for_everyone()
        rank_state = self._rank_state()
        if self.is_main:
            from mmreason.config import to_dict

            trainer_state = {
                "format": STATE_FORMAT, "global_step": self.global_step, "epoch": self.epoch,
                "step_in_epoch": self.step_in_epoch, "steps_per_epoch": self.steps_per_epoch,
                "total_steps": self.total_steps, "world_size": acc.num_processes,
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "data": self._stream.state_dict() if self._stream else {"pass": 0, "batches_in_pass": 0},
                "train_config": to_dict(self.cfg), **rank_state,
            }
            write_checkpoint_dir(tmp, weights=trainable_state_dict(self.model), config=self.config,
                                 trainer_state=trainer_state)
            save_peft_adapters(self.model, tmp)
        else:
            torch.save(rank_state, tmp / f"rank{acc.process_index}_state.pt")
        acc.wait_for_everyone()
        if self.is_main:
            publish_dir(tmp, final)
            prune_checkpoints(self.run_dir, self.cfg.keep_checkpoints)
        acc.wait_for_everyone()
        self.last_checkpoint = final
        return final

    def _resume(self) -> tuple[Path | None, dict | None]:
        """Load the checkpoint :func:`plan_run` chose; returns it and this process's RNG/log state."""
        ckpt = self.plan.resume_from
        if ckpt is None:
            if self.is_main:
                self._truncate_metrics(0)  # records of an earlier attempt that never reached a checkpoint
            return None, None
        acc = self.accelerator
        state = read_trainer_state(ckpt)
        load_checkpoint(self.model, ckpt, strict=True)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.global_step, self.epoch = int(state["global_step"]), int(state["epoch"])
        self.step_in_epoch = int(state["step_in_epoch"])
        self._stream.load_state_dict(state["data"])
        self.last_checkpoint = ckpt
        same_world = int(state.get("world_size", 1)) == acc.num_processes
        if not same_world:
            log.warning("%s was written by %s processes, resuming with %s: the data order and random streams "
                        "will differ from an uninterrupted run", ckpt, state.get("world_size"), acc.num_processes)
        if acc.process_index == 0:
            rank_state = state
        else:
            path = ckpt / f"rank{acc.process_index}_state.pt"
            rank_state = torch.load(path, map_location="cpu", weights_only=False) if path.is_file() else None
        if rank_state is not None and same_world:
            self._window = {k: torch.tensor(v, device=acc.device) for k, v in rank_state["log_window"].items()}
            self._window_steps = int(rank_state["log_window_steps"])
        else:
            rank_state = None
        if self.is_main:
            self._truncate_metrics(self.global_step)
            log.info("resumed from step %d of %s", self.global_step, self.run_dir)
        return ckpt, rank_state

    def _truncate_metrics(self, step: int) -> None:
        """Drop records written after the checkpoint (by the interrupted run), so the file reads as one run."""
        from mmreason.utils.io import atomic_write_text

        path = self.run_dir / METRICS_NAME
        if not path.is_file():
            return
        kept = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                if json.loads(line).get("step", 0) <= step:
                    kept.append(line)
            except (json.JSONDecodeError, AttributeError):
                continue  # a line cut short by the crash
        atomic_write_text(path, "".join(line + "\n" for line in kept))


def _loss_of(out: Any, model_name: str) -> torch.Tensor:
    if not isinstance(out, dict) or "loss" not in out:
        raise TypeError(f"{model_name}.loss(batch) must return a dict with a 'loss' tensor, got "
                        f"{type(out).__name__}{' with keys ' + str(list(out)) if isinstance(out, dict) else ''}")
    loss = out["loss"]
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        raise TypeError(f"{model_name}.loss(batch)['loss'] must be a scalar tensor, got "
                        f"{type(loss).__name__}{tuple(loss.shape) if isinstance(loss, torch.Tensor) else ''}")
    return loss.reshape(())


def check_train_config(cfg: TrainConfig) -> None:
    """The checks that need no model or data (run them before building anything); raise ``ValueError``."""
    positive = {"batch_size": cfg.batch_size, "grad_accum_steps": cfg.grad_accum_steps, "log_every": cfg.log_every}
    for name, value in positive.items():
        if value < 1:
            raise ValueError(f"train.{name} must be >= 1, got {value}")
    for name in ("epochs", "steps_per_epoch", "max_steps", "warmup_steps", "warmup_epochs", "save_every",
                 "keep_checkpoints", "num_workers", "global_batch_size"):
        if getattr(cfg, name) < 0:
            raise ValueError(f"train.{name} must be >= 0, got {getattr(cfg, name)}")
    if cfg.eval_every < -1:
        raise ValueError(f"train.eval_every must be -1 (never), 0 (each epoch) or a step count, got {cfg.eval_every}")
    if cfg.log_with == "tensorboard":
        import importlib.util

        if importlib.util.find_spec("tensorboard") is None and importlib.util.find_spec("tensorboardX") is None:
            raise ValueError("train.log_with=tensorboard needs the tensorboard package: pip install tensorboard "
                             "(or set train.log_with=none)")
