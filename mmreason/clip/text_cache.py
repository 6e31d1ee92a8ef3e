"""A cache of frozen CLIP text features: each prompt is encoded once, then looked up."""
from __future__ import annotations

from typing import Callable, Sequence

import torch

from mmreason.clip.towers import CLIPTextTower


class TextFeatureCache:
    """Frozen text features keyed by prompt string.

    ``encode(prompts)`` returns ``[len(prompts), E]``; prompts seen before are not re-encoded. The tower is run
    under ``torch.no_grad`` in eval mode, so the cache is only for frozen text towers (adapted towers must be
    re-run every step).
    """

    def __init__(self, text_tower: CLIPTextTower, tokenize: Callable[[list[str]], torch.Tensor],
                 batch_size: int = 256):
        self.text_tower = text_tower
        self.tokenize = tokenize
        self.batch_size = batch_size
        self._features: dict[str, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self._features)

    @torch.no_grad()
    def encode(self, prompts: Sequence[str]) -> torch.Tensor:
        new = [p for p in dict.fromkeys(prompts) if p not in self._features]
        if new:
            was_training = self.text_tower.training
            self.text_tower.eval()
            device = self.text_tower.positional_embedding.device
            for start in range(0, len(new), self.batch_size):
                chunk = new[start:start + self.batch_size]
                feats = self.text_tower(self.tokenize(chunk).to(device)).float().cpu()  # [n, E]
                self._features.update(zip(chunk, feats))
            self.text_tower.train(was_training)
        return torch.stack([self._features[p] for p in prompts])
