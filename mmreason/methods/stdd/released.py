"""Released STDD checkpoints (github.com/Mia-YatingYu/STDD) <-> the project's STDD model.

The released ``TemporalClipVideo`` saves ``{"model_state": state_dict, ...}`` (PySlowFast ``save_checkpoint``; the
averaged ``wa_checkpoints/*.pth`` of ``weight_average_tool.py`` hold ``{"model_state": ...}`` with the ``model.*``
keys only). Its keys and the project's (``vp`` = ``vision.tower.`` with Space-time Cross Attention, ``vision.``
for ``temporal_modeling=none``):

======================================================  ==========================================
released                                                project
======================================================  ==========================================
``model.visual.transformer.resblocks.{i}.<p>``          ``{vp}blocks.{i}.<p>`` (same ``<p>`` names)
``model.visual.{conv1.weight, class_embedding, ...}``   ``{vp}{conv1.weight, class_embedding, ...}``
``model.transformer.resblocks.{i}.<p>``                 ``text.blocks.{i}.<p>``
``model.{token_embedding.weight, positional_embedding,  ``text.{...}``
ln_final.*, text_projection}``
``model.logit_scale``                                   ``logit_scale``
``raw_model.visual.*`` (frozen distillation teacher)    ``raw_vision.*``
``raw_model.*`` (the teacher's text tower, logit scale) dropped: the project's teacher is a vision tower
``projector_v.0.weight`` / ``projector_v.2.weight``     ``projector.fc1.weight`` / ``projector.fc2.weight``
======================================================  ==========================================

A config without distillation (``model.distill_weight = 0``) has no teacher and no projector: their keys are
dropped. The released code uses the projector only under ``no_grad`` (it never changes), so a checkpoint without
it (the averaged ones) gets the project's initial projector, seeded by ``model.init_seed``. Keys that match no
rule pass through unchanged, so the converter's key check names them.
"""
from __future__ import annotations

import re

import torch

_TEXT_TOP = ("token_embedding.weight", "positional_embedding", "ln_final.weight", "ln_final.bias", "text_projection")
_PROJECTOR = {"projector_v.0.weight": "projector.fc1.weight", "projector_v.2.weight": "projector.fc2.weight"}


def _vision_prefix(model_cfg) -> str:
    return "vision.tower." if model_cfg.temporal_modeling == "stcross" else "vision."


def _visual_key(rest: str) -> str:
    """A released ``visual.`` sub-key -> the project's vision-tower sub-key."""
    return re.sub(r"^transformer\.resblocks\.", "blocks.", rest)


def convert_released(state: dict, cfg) -> dict[str, torch.Tensor]:
    """A released STDD checkpoint's state dict (or the whole ``{"model_state": ...}`` file content) -> the state
    of ``STDDModel`` built from ``cfg``; see the module docstring for the mapping."""
    if isinstance(state.get("model_state"), dict):
        state = state["model_state"]
    state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
    teacher = cfg.model.distill_weight > 0
    vp = _vision_prefix(cfg.model)
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith("model.visual."):
            out[vp + _visual_key(key[len("model.visual."):])] = value
        elif key.startswith("model.transformer.resblocks."):
            out["text.blocks." + key[len("model.transformer.resblocks."):]] = value
        elif key.startswith("model.") and key[len("model."):] in _TEXT_TOP:
            out["text." + key[len("model."):]] = value
        elif key == "model.logit_scale":
            out["logit_scale"] = value
        elif key.startswith("raw_model."):
            if teacher and key.startswith("raw_model.visual."):
                out["raw_vision." + _visual_key(key[len("raw_model.visual."):])] = value
        elif key in _PROJECTOR:
            if teacher:
                out[_PROJECTOR[key]] = value
        else:
            out[key] = value  # unknown: left for the converter's key check to report
    if teacher and "projector.fc1.weight" not in out and "model.visual.proj" in state:
        from mmreason.methods.stdd.model import ResidualProjector

        dim = state["model.visual.proj"].shape[1]
        initial = ResidualProjector(dim, cfg.model.projector_alpha, seed=cfg.model.init_seed)
        out.update({f"projector.{k}": v for k, v in initial.state_dict().items()})
    return out


def to_released(model) -> dict[str, torch.Tensor]:
    """The released layout of a project ``STDDModel`` (the inverse of :func:`convert_released`; the teacher's
    text tower, which the project does not hold, is not written)."""
    vp = _vision_prefix(model.cfg)
    out: dict[str, torch.Tensor] = {}
    for key, value in model.state_dict().items():
        if key.startswith(vp):
            rest = re.sub(r"^blocks\.", "transformer.resblocks.", key[len(vp):])
            out["model.visual." + rest] = value
        elif key.startswith("text.blocks."):
            out["model.transformer.resblocks." + key[len("text.blocks."):]] = value
        elif key.startswith("text."):
            out["model." + key[len("text."):]] = value
        elif key == "logit_scale":
            out["model.logit_scale"] = value
        elif key.startswith("raw_vision."):
            rest = re.sub(r"^blocks\.", "transformer.resblocks.", key[len("raw_vision."):])
            out["raw_model.visual." + rest] = value
        elif key.startswith("projector."):
            out[{v: k for k, v in _PROJECTOR.items()}[key]] = value
        else:
            raise ValueError(f"no released name for the STDD model's {key!r}")
    return out
