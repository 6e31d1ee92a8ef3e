"""Parameter-efficient pieces shared by CLIP-based video methods: a bottleneck adapter and PEFT LoRA injection."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


class BottleneckAdapter(nn.Module):
    """``fc2(GELU(fc1(x)))`` with width ``D -> ratio*D -> D`` (AIM-style), optionally plus ``x`` (inner skip).

    ``zero_init`` zeroes ``fc2`` so the adapter starts as the identity (with skip) or as zero (without).
    """

    def __init__(self, width: int, ratio: float = 0.25, skip: bool = False, zero_init: bool = True):
        super().__init__()
        hidden = max(1, int(width * ratio))
        self.skip = skip
        self.fc1 = nn.Linear(width, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, width)
        if zero_init:
            nn.init.zeros_(self.fc2.weight)
            nn.init.zeros_(self.fc2.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.fc2(self.act(self.fc1(x)))
        return x + out if self.skip else out


def inject_lora(blocks: nn.ModuleList, layers: Sequence[int], targets: Sequence[str], *, rank: int, alpha: float,
                dropout: float = 0.0, where: str = "blocks") -> list[str]:
    """Inject PEFT LoRA layers into ``targets`` (e.g. ``attn.out_proj``, ``mlp.c_fc``) of ``blocks[i]`` for i in
    ``layers``. Returns the full module names adapted. Raises ``ValueError`` naming any target that a block
    does not have (PEFT's own error is less specific), so a typo never trains nothing silently.

    Only ``nn.Linear`` modules can carry LoRA here; the attention's fused ``in_proj_weight`` is a bare
    parameter, so LoRA on attention goes through ``attn.out_proj`` (which :func:`block_attention` calls as a
    module).
    """
    from peft import LoraConfig, inject_adapter_in_model

    if not targets:
        raise ValueError("LoRA needs at least one target module (e.g. 'attn.out_proj', 'mlp.c_fc')")
    names = dict(blocks.named_modules())
    full = []
    for i in layers:
        if not 0 <= i < len(blocks):
            raise ValueError(f"LoRA layer {i} does not exist; the tower has {len(blocks)} blocks")
        for t in targets:
            key = f"{i}.{t}"
            if key not in names:
                block_children = sorted(n[len(f"{i}."):] for n in names if n.startswith(f"{i}.") and n != str(i))
                raise ValueError(f"LoRA target module {t!r} not found in {where}[{i}]; its modules are: "
                                 f"{', '.join(block_children)}")
            if not isinstance(names[key], nn.Linear):
                raise ValueError(f"LoRA target {where}[{i}].{t} is a {type(names[key]).__name__}, not nn.Linear")
            full.append(key)
    # grad flags are restored afterwards: PEFT's injection may flip requires_grad of the whole module
    flags = {n: p.requires_grad for n, p in blocks.named_parameters()}
    inject_adapter_in_model(LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=full),
                            blocks)
    for n, p in blocks.named_parameters():
        p.requires_grad_("lora_" in n or flags.get(n, False))
    return [f"{where}.{k}" for k in full]
