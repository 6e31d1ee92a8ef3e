"""CLIP towers for video methods: frozen blocks whose attention methods re-apply to rearranged tokens.

Public API:
    build_clip(model_name, pretrained=..., checkpoint=..., num_frames=...) -> CLIPTowers(vision, text, ...)
    CLIPVisionTower (frames [B, T, 3, H, W] -> per-frame features [B, T, E]), CLIPTextTower
    block_attention / block_mlp / block_forward: pure functions of a residual block's frozen weights
    read_openai_checkpoint(path) -> (state_dict, activation); ActivationMismatchWarning
    TextFeatureCache: frozen text features keyed by prompt
    freeze(module)

open_clip is imported only inside :func:`build_clip` / :func:`model_config`.
"""
from mmreason.clip.loading import (ActivationMismatchWarning, CLIPTowers, build_clip, freeze, model_config,
                                   read_openai_checkpoint, register_presets)
from mmreason.clip.text_cache import TextFeatureCache
from mmreason.clip.towers import CLIPTextTower, CLIPVisionTower, block_attention, block_forward, block_mlp

__all__ = [
    "ActivationMismatchWarning", "CLIPTowers", "CLIPTextTower", "CLIPVisionTower", "TextFeatureCache",
    "block_attention", "block_forward", "block_mlp", "build_clip", "freeze", "model_config",
    "read_openai_checkpoint", "register_presets",
]
