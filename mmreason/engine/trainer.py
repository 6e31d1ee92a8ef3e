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

Distributed evaluation: run the same ``evaluate`` on every process over a loader from
:func:`prepare_eval_loader` and combine per-sample tensors with :func:`gather_for_eval`
(``accelerator.gather_for_metrics``), which drops the samples accelerate repeated to even out the shards.
"""
from __future__ import annotations

import json
import logging
import math
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, IterableDataset, Sampler

from mmreason.engine.checkpoint import (CHECKPOINTS_DIR, checkpoint_name, latest_checkpoint, load_checkpoint,
                                        prune_checkpoints, publish_dir, read_trainer_state, temp_dir_for,
                                        trainable_state_dict, write_checkpoint_dir)
from mmreason.engine.config import TrainConfig
from mmreason.engine.schedule import build_scheduler
from mmreason.utils.seed import seed_everything

log = logging.getLogger("mmreason.engine")

METRICS_NAME = "metrics.jsonl"
STATE_FORMAT = 1


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


def build_accelerator(train_cfg: TrainConfig):
    """The accelerator the trainer uses when none is passed: mixed precision and gradient accumulation from
    ``train_cfg``; DDP looks for unused parameters (methods may skip a branch on some steps)."""
    from accelerate import Accelerator, DistributedDataParallelKwargs

    return Accelerator(mixed_precision=resolve_mixed_precision(train_cfg.mixed_precision),
                       gradient_accumulation_steps=train_cfg.grad_accum_steps,
                       kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])


def build_optimizer(params: list[nn.Parameter], train_cfg: TrainConfig) -> torch.optim.Optimizer:
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
        config: the resolved experiment config, saved as ``config.json`` in the run folder and every checkpoint.
        accelerator: an ``accelerate.Accelerator`` to use instead of building one (its gradient accumulation
            must equal ``train_cfg.grad_accum_steps``).
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
        _check_train_config(train_cfg)
        self.model, self.cfg, self.config = model, train_cfg, config
        self.evaluate = evaluate
        self.run_dir = Path(run_dir)

        self.accelerator = accelerator if accelerator is not None else build_accelerator(train_cfg)
        if self.accelerator.gradient_accumulation_steps != train_cfg.grad_accum_steps:
            raise ValueError(f"the accelerator accumulates {self.accelerator.gradient_accumulation_steps} micro-batches "
                             f"but train.grad_accum_steps is {train_cfg.grad_accum_steps}")
        self.is_main = self.accelerator.is_main_process
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
        # Not prepared: accelerate would step it once per process; here one step = one optimizer step.
        self.scheduler = build_scheduler(optimizer, train_cfg, self.total_steps)

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
        # accelerate ends an accumulation early at the end of each pass, so a pass is this many optimizer steps
        return math.ceil(batches / self.cfg.grad_accum_steps)

    # -------------------------------------------------------------------------------------------- training

    def fit(self) -> TrainResult:
        """Train to ``total_steps`` (resuming from the newest checkpoint when ``train_cfg.resume``)."""
        acc, cfg = self.accelerator, self.cfg
        self._stream = _DataStream(self.train_loader, self.sampler, self._loader_generator, acc, cfg.seed)
        resumed_from, rank_state = self._resume()
        if self.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            if self.config is not None:
                from mmreason.config import save_config

                save_config(self.config, self.run_dir / "config.json")
        acc.wait_for_everyone()
        if rank_state is not None:  # last, so nothing above can consume random numbers after the restore
            _restore_rng(rank_state["rng"])
        acc.step = 0  # checkpoints fall on optimizer-step boundaries, where accelerate's micro-step count is 0

        history, eval_history = [], []
        progress = self._progress_bar()
        self.model.train()
        try:
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
                if self.evaluate is not None and cfg.eval_every != -1 and (
                        (cfg.eval_every > 0 and self.global_step % cfg.eval_every == 0)
                        or (cfg.eval_every == 0 and epoch_end) or last):
                    record = self._run_evaluation()
                    eval_history.append(record)
                    if self.is_main and cfg.progress:
                        progress.write(f"step {self.global_step}: " + ", ".join(
                            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record["metrics"].items()))
                if (cfg.save_every > 0 and self.global_step % cfg.save_every == 0) or (
                        cfg.save_every == 0 and epoch_end) or last:
                    self.save_checkpoint()
        finally:
            self._stream.close()
            progress.close()
        return TrainResult(global_step=self.global_step, epoch=self.epoch, history=history,
                           eval_history=eval_history, run_dir=self.run_dir, last_checkpoint=self.last_checkpoint,
                           resumed_from=resumed_from)

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
                out = self._wrapped(batch)
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
        """Load the newest checkpoint of the run folder; returns it and this process's RNG/log state."""
        ckpt = latest_checkpoint(self.run_dir)
        if ckpt is None:
            return None, None
        if not self.cfg.resume:
            raise RuntimeError(f"{self.run_dir} already holds checkpoints (newest: {ckpt.name}); set train.resume=true "
                               f"to continue that run, or choose another train.output_dir")
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
        log.info("resumed %s at step %d (epoch %d)", ckpt, self.global_step, self.epoch)
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


def _check_train_config(cfg: TrainConfig) -> None:
    positive = {"batch_size": cfg.batch_size, "grad_accum_steps": cfg.grad_accum_steps, "log_every": cfg.log_every}
    for name, value in positive.items():
        if value < 1:
            raise ValueError(f"train.{name} must be >= 1, got {value}")
    for name in ("epochs", "steps_per_epoch", "max_steps", "warmup_steps", "save_every", "keep_checkpoints",
                 "num_workers"):
        if getattr(cfg, name) < 0:
            raise ValueError(f"train.{name} must be >= 0, got {getattr(cfg, name)}")
    if cfg.eval_every < -1:
        raise ValueError(f"train.eval_every must be -1 (never), 0 (each epoch) or a step count, got {cfg.eval_every}")
