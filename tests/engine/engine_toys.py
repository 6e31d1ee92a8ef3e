"""Small models, data and configs shared by the engine tests and the two-process script (not a test module)."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import Dataset

from mmreason.config import option
from mmreason.engine.config import TrainConfig
from mmreason.engine.trainer import gather_for_eval, prepare_eval_loader


class TeacherClassification(Dataset):
    """``n`` Gaussian points labelled by a random linear teacher (argmax of ``x @ W``): learnable, 1/classes chance.
    ``seed`` fixes the teacher, ``split`` the points (a held-out split shares the teacher)."""

    def __init__(self, n: int = 256, dim: int = 16, classes: int = 4, seed: int = 0, split: int = 0):
        teacher = torch.randn(dim, classes, generator=torch.Generator().manual_seed(seed))
        self.x = torch.randn(n, dim, generator=torch.Generator().manual_seed(1000 * seed + 1 + split))
        self.y = (self.x @ teacher).argmax(1)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict:
        return {"x": self.x[i], "y": self.y[i], "index": i}


class ToyClassifier(nn.Module):
    """``stem`` (frozen when ``frozen_stem``) -> ReLU -> dropout -> ``head``; mean cross-entropy loss.

    ``crash_at_call`` makes ``loss`` raise on that call (0-based), simulating a run killed mid-training.
    ``seen`` records the sample indices of every batch (to check how processes split the data).
    """

    def __init__(self, dim: int = 16, width: int = 32, classes: int = 4, dropout: float = 0.0,
                 frozen_stem: bool = False, crash_at_call: int | None = None):
        super().__init__()
        self.stem = nn.Linear(dim, width)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(width, classes)
        if frozen_stem:
            self.stem.requires_grad_(False)
        self.crash_at_call = crash_at_call
        self.calls = 0
        self.seen: list[list[int]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, D] -> [B, C]
        return self.head(self.drop(torch.relu(self.stem(x))))

    def loss(self, batch: dict) -> dict:
        if self.crash_at_call is not None and self.calls == self.crash_at_call:
            raise RuntimeError("simulated crash")
        self.calls += 1
        self.seen.append(batch["index"].tolist())
        logits = self(batch["x"])
        loss = nn.functional.cross_entropy(logits, batch["y"])
        return {"loss": loss, "acc": (logits.argmax(1) == batch["y"]).float().mean()}


def make_evaluate(dataset: Dataset, batch_size: int = 16):
    """``evaluate(model, accelerator)``: accuracy over ``dataset``, gathered across processes, plus the count of
    gathered samples (equals ``len(dataset)`` when the gather drops accelerate's padding correctly)."""

    def evaluate(model: ToyClassifier, accelerator) -> dict:
        loader = prepare_eval_loader(dataset, batch_size, accelerator=accelerator)
        correct = []
        for batch in loader:
            hit = (model(batch["x"]).argmax(1) == batch["y"]).float()  # [B]
            correct.append(gather_for_eval(accelerator, hit))
        correct = torch.cat(correct)
        return {"acc": correct.mean().item(), "count": int(correct.numel())}

    return evaluate


def params_digest(model: nn.Module) -> str:
    h = hashlib.sha256()
    for name, p in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


@dataclass
class ToyExperiment:
    """A minimal experiment config (what a method's config looks like to the engine)."""

    width: int = option(32, help="hidden width of the toy classifier")
    train: TrainConfig = option(default_factory=TrainConfig, help="engine settings")
