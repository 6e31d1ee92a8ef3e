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
    num_workers: int = option(0, help="DataLoader worker processes")
    optimizer: str = option("adamw", help="optimizer", choices=("adamw", "adam", "adamax", "sgd"))
    lr: float = option(1e-3, help="peak learning rate")
    weight_decay: float = option(0.0, help="decoupled weight decay (AdamW) or L2 (SGD)")
    betas: tuple[float, float] = option((0.9, 0.999), help="Adam betas")
    momentum: float = option(0.9, help="SGD momentum")
    lr_schedule: str = option("cosine", help="decay after warm-up", choices=("cosine", "linear", "constant"))
    warmup_steps: int = option(0, help="linear warm-up from warmup_start_factor x lr to lr over these steps")
    warmup_start_factor: float = option(0.0, help="learning-rate factor at step 0 of the warm-up")
    min_lr_ratio: float = option(0.0, help="final learning rate as a fraction of lr (cosine/linear)")
    grad_accum_steps: int = option(1, help="micro-batches accumulated into one optimizer step")
    grad_clip: float = option(0.0, help="clip the global gradient norm to this value; 0 = off")
    mixed_precision: str = option("auto", help="autocast dtype; auto = bf16 on CUDA devices that support it, else no",
                                  choices=("auto", "no", "bf16", "fp16"))
    eval_every: int = option(0, help="evaluate every N optimizer steps; 0 = at the end of each epoch; -1 = never")
    save_every: int = option(0, help="checkpoint every N optimizer steps; 0 = at the end of each epoch")
    keep_checkpoints: int = option(0, help="keep only the newest N step checkpoints; 0 = keep all (weight averaging needs them)")
    log_every: int = option(10, help="log the running loss every N optimizer steps")
    resume: bool = option(True, help="continue from the newest checkpoint in output_dir when one exists")
    progress: bool = option(True, help="show a progress bar on the main process")
