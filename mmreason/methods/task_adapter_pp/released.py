"""The authors' released Task-Adapter++ checkpoints <-> this project's Task-Adapter(++) models.

The released ``run.py`` (github.com/Jaulin-Bage/Task-Adapter-pp) saves ``{'epoch': int, 'state':
model.state_dict()}``. Its ``TaskAdapter`` model holds (``feature`` is wrapped in ``nn.DataParallel``, hence
``feature.module.``; the generic converter strips every ``module.`` component before calling
:func:`convert_released`):

* ``feature.module.*`` — the visual Task-Adapter ViT (``module_adapter.py``): the OpenAI CLIP names
  (``conv1``, ``class_embedding``, ``positional_embedding``, ``ln_pre``, ``transformer.resblocks.{i}.{attn,
  ln_1, mlp, ln_2}``, ``ln_post``, ``proj``), ``temporal_embedding`` ``[1, 8, D]`` and, in *every* block, the
  adapters ``t_adapter``, ``s_adapter``, ``task_adapter``, ``MLP_adapter`` with linears ``D_fc1`` / ``D_fc2``;
* ``text.*`` — the order-adapted CLIP text encoder (``module_sem_adapter.py``): ``token_embedding``,
  ``positional_embedding``, ``transformer.resblocks.{i}.{attn, ln_1, mlp, ln_2}``, ``ln_final``,
  ``text_projection``, ``logit_scale`` and, in every block, ``sub3_adapter.D_fc1`` / ``D_fc2``;
* ``ca.ln_1.{weight,bias}`` — the transition attention's LayerNorm (SSv2-Full only; elsewhere ``nn.Identity``).

Mapping (released -> project): ``feature.X`` -> ``visual.tower.X`` (``transformer.resblocks`` -> ``blocks``);
adapters of adapted block ``i`` -> ``visual.block_adapters.{i}.{t_adapter, s_adapter, task_adapter,
mlp_adapter}.{fc1, fc2}``; ``text.X`` -> ``text.tower.X``; ``sub3_adapter`` of adapted text block ``i`` ->
``text.order_adapters.{i}``; ``ca.ln_1`` -> ``transition_ln``. Dropped, because the released forward never uses
them: the adapters of the blocks below the adapted last layers (the released code builds them in every block,
only ``use_adapter`` blocks call them) and ``text.logit_scale``. Keys that match none of these patterns are
passed through under their own name, so the converter reports them as unknown.

A Task-Adapter (not ++) model takes the ``feature.*`` part: its own released layout is the visual branch above.
"""
from __future__ import annotations

import math
import re
from typing import Any

import torch
from torch import nn

# released adapter module / linear names -> project names
ADAPTERS = {"t_adapter": "t_adapter", "s_adapter": "s_adapter", "task_adapter": "task_adapter",
            "MLP_adapter": "mlp_adapter"}
LINEARS = {"D_fc1": "fc1", "D_fc2": "fc2"}
_BLOCK = re.compile(r"^transformer\.resblocks\.(\d+)\.(.+)$")


def _check_task_adapters(cfg: Any) -> None:
    if cfg.model.adapter != "task":
        raise ValueError(f"released Task-Adapter++ checkpoints hold task and order adapters; model.adapter="
                         f"{cfg.model.adapter!r} cannot take them (use model.adapter=task)")


def _adapted(num_layers: int, adapter_layers: int) -> range:
    return range(num_layers - adapter_layers, num_layers)


def _map_tower(rest: str, tower: str, adapters: str, adapted: range, adapter_names: dict[str, str]) -> str | None:
    """One released tower key (prefix removed) -> project key; ``None`` = deliberately dropped."""
    m = _BLOCK.match(rest)
    if m is None:
        return f"{tower}.{rest}"
    i, inner = int(m.group(1)), m.group(2)
    module, _, tail = inner.partition(".")
    if module in adapter_names:  # e.g. t_adapter.D_fc1.weight
        linear, _, param = tail.partition(".")
        if i not in adapted:
            return None  # built in every released block, called only in the adapted ones
        name = adapter_names[module]
        return f"{adapters}.{i}.{name + '.' if name else ''}{LINEARS.get(linear, linear)}.{param}"
    return f"{tower}.blocks.{i}.{inner}"


def convert_released(state: dict[str, torch.Tensor], cfg: Any) -> dict[str, torch.Tensor]:
    """Released Task-Adapter(++) state dict (``module.`` stripped) -> state dict of ``build_model(cfg)``."""
    from mmreason.clip.loading import model_config

    _check_task_adapters(cfg)
    m = cfg.model
    clip = model_config(m.clip_model)
    vision_layers, text_layers = clip["vision_cfg"]["layers"], clip["text_cfg"]["layers"]
    has_text = hasattr(m, "text_adapter_layers")  # Task-Adapter++ (Task-Adapter has no text branch)
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        prefix, _, rest = key.partition(".")
        if prefix == "feature":
            new = _map_tower(rest, "visual.tower", "visual.block_adapters", _adapted(vision_layers, m.adapter_layers),
                             ADAPTERS)
        elif prefix == "text" and has_text:
            if rest == "logit_scale":
                continue  # CLIP's contrastive temperature: unused by Task-Adapter++
            new = _map_tower(rest, "text.tower", "text.order_adapters",
                             _adapted(text_layers, m.text_adapter_layers), {"sub3_adapter": ""})
        elif prefix == "ca" and rest in ("ln_1.weight", "ln_1.bias") and has_text:
            new = f"transition_ln.{rest.split('.', 1)[1]}"
        else:
            new = key  # unknown: reported by the converter under its released name
        if new is not None:
            out[new] = value
    return out


def to_released(model: nn.Module) -> dict[str, torch.Tensor]:
    """The released ``model.state_dict()`` layout of a project Task-Adapter(++) model (what ``run.py`` saves
    under ``'state'``, loadable by the released code with ``strict=True``): adapters of non-adapted blocks and
    ``text.logit_scale`` (both unused by the released forward) are filled with zeros and ln(1/0.07)."""
    state = model.state_dict()
    if any("lora_" in k for k in state):
        raise ValueError("a model with LoRA adapters has no released Task-Adapter++ layout")
    out: dict[str, torch.Tensor] = {}
    visual, text = model.visual, getattr(model, "text", None)

    def tower(prefix: str, project: str) -> None:
        for key, value in state.items():
            if key.startswith(project + "."):
                rest = key[len(project) + 1:]
                rest = re.sub(r"^blocks\.", "transformer.resblocks.", rest)
                out[f"{prefix}.{rest}"] = value

    def adapters(prefix: str, project: str, num_layers: int, width: int, hidden: int, names: dict[str, str]) -> None:
        for i in range(num_layers):
            for released, own in names.items():
                for linear, shape_w, shape_b in (("D_fc1", (hidden, width), (hidden,)),
                                                 ("D_fc2", (width, hidden), (width,))):
                    base = f"{project}.{i}.{own + '.' if own else ''}{LINEARS[linear]}"
                    key = f"{prefix}.transformer.resblocks.{i}.{released}.{linear}"
                    out[f"{key}.weight"] = state.get(f"{base}.weight", torch.zeros(shape_w))
                    out[f"{key}.bias"] = state.get(f"{base}.bias", torch.zeros(shape_b))

    tower("feature.module", "visual.tower")
    first = next(iter(visual.block_adapters.values()), None)
    hidden = first.t_adapter.fc1.out_features if first is not None else max(1, int(visual.tower.width * 0.25))
    adapters("feature.module", "visual.block_adapters", visual.tower.num_layers, visual.tower.width, hidden, ADAPTERS)
    if text is not None:
        tower("text", "text.tower")
        out["text.logit_scale"] = torch.tensor(math.log(1 / 0.07))
        first = next(iter(text.order_adapters.values()), None)
        hidden = first.fc1.out_features if first is not None else max(1, int(text.tower.width * 0.25))
        adapters("text", "text.order_adapters", text.tower.num_layers, text.tower.width, hidden, {"sub3_adapter": ""})
    if getattr(model, "transition_ln", None) is not None:
        out["ca.ln_1.weight"] = state["transition_ln.weight"]
        out["ca.ln_1.bias"] = state["transition_ln.bias"]
    return {k: v.detach().clone() for k, v in out.items()}
