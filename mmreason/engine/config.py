"""Training-loop settings shared by every method (the ``train`` section of an experiment config)."""
from __future__ import annotations

from dataclasses import dataclass

from mmreason.config import option


@dataclass
class TrainConfig:
    """How the engine trains: optimiser, schedule, precision, evaluation and checkpoint cadence."""

    output_dir: str = option("", help="run folder; empty = runs/<method>/<config name>")
    seed: int = option(0, help="seed for python, numpy and torch (each process adds its rank for data order)")
    epochs: int = option(1, help="passes over the training data (or blocks of steps_per_epoch steps)")
    steps_per_epoch: int = option(0, help="optimizer steps per epoch; 0 = one pass over the training loader")
    max_steps: int = option(0, help="stop after this many optimizer steps; 0 = epochs x steps_per_epoch")
    batch_size: int = option(8, help="samples per process per micro-batch (1 for episodic few-shot data)")
    global_batch_size: int = option(
        0, help="samples per optimizer step summed over all processes; > 0 derives the gradient accumulation as "
                "global_batch_size / (batch_size x processes), so 1 and N processes train the same schedule; "
                "0 = batch_size x grad_accum_steps x processes")
    num_workers: int = option(0, help="DataLoader worker processes")
    optimizer: str = option("adamw", help="optimizer", choices=("adamw", "adam", "adamax", "sgd"))
    lr: float = option(1e-3, help="peak learning rate")
    weight_decay: float = option(0.0, help="decoupled weight decay (AdamW) or L2 (SGD)")
    decay_1d_params: bool = option(True, help="apply weight_decay to 1-D parameters (biases, norm scales) too; "
                                   "false exempts them, as PySlowFast's SOLVER.ZERO_WD_1D_PARAM")
    betas: tuple[float, float] = option((0.9, 0.999), help="Adam betas")
    momentum: float = option(0.9, help="SGD momentum")
    lr_schedule: str = option("cosine", help="decay after warm-up", choices=("cosine", "linear", "constant"))
    warmup_steps: int = option(0, help="linear warm-up from warmup_start_factor x lr to lr over these steps")
    warmup_epochs: float = option(0.0, help="warm-up length in epochs instead of steps (rounded to optimizer steps "
                                            "with this run's steps per epoch); > 0 replaces warmup_steps")
    warmup_start_factor: float = option(0.0, help="learning-rate factor at step 0 of the warm-up")
    min_lr_ratio: float = option(0.0, help="final learning rate as a fraction of lr (cosine/linear)")
    grad_accum_steps: int = option(1, help="micro-batches accumulated into one optimizer step (replaced by the one "
                                           "derived from global_batch_size when that is set)")
    grad_clip: float = option(0.0, help="clip the global gradient norm to this value; 0 = off")
    mixed_precision: str = option("auto", help="autocast dtype; auto = bf16 on CUDA devices that support it, else no",
                                  choices=("auto", "no", "bf16", "fp16"))
    find_unused_parameters: bool = option(
        False, help="multi-process (DDP) runs search every step for trainable parameters that got no gradient; "
                    "needed only when a method's loss skips some trainable parameters on some steps")
    eval_every: int = option(0, help="evaluate every N optimizer steps; 0 = at the end of each epoch; -1 = never")
    save_every: int = option(0, help="checkpoint every N optimizer steps; 0 = at the end of each epoch")
    keep_checkpoints: int = option(0, help="keep only the newest N step checkpoints; 0 = keep all (weight averaging needs them)")
    log_every: int = option(10, help="log the running loss every N optimizer steps")
    log_with: str = option("none", help="also log scalars through an accelerate tracker: tensorboard writes "
                                        "<run>/tensorboard/ (needs the tensorboard package)",
                           choices=("none", "tensorboard"))
    resume: str | bool = option(
        "auto", help="when output_dir already holds checkpoints: auto (or true) = resume if the resolved config "
                     "equals the run's, else fail listing the changed keys; continue = resume with the run's config, "
                     "applying only the changes allowed on a resume (train.epochs, train.max_steps, cadences, "
                     "eval.*) and recording them in the run's config history; no (or false) = start a new run "
                     "folder beside it", choices=("auto", "continue", "no", True, False))
    progress: bool = option(True, help="show a progress bar on the main process (the CLI turns it on unless "
                                       "--no-progress or MMREASON_PROGRESS=0)")
