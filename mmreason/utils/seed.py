"""Seeding of python, numpy and torch in one call."""
from __future__ import annotations

import random

import numpy as np


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
