"""The plain training loop the ADSM synthetic tests share: Adam, shuffled batches of 32 from a fixed seed."""
from __future__ import annotations

import torch


def train_steps(model, dataset, steps: int, lr: float = 2e-3, batch_size: int = 32):
    """Train ``model`` (``loss(batch)["loss"]``) for ``steps`` Adam steps on ``dataset``, cycling it; returns it."""
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True,
                                         generator=torch.Generator().manual_seed(0))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    step = 0
    while step < steps:
        for batch in loader:
            loss = model.loss(batch)["loss"]
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            if step == steps:
                break
    return model
