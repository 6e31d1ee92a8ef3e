"""Build CLIP towers from open_clip model configs and load weights.

Weights come from one of:

* an open_clip ``pretrained=`` tag (e.g. ``ViT-B-16-quickgelu`` + ``openai``), downloaded by open_clip;
* a local OpenAI checkpoint file such as ``ViT-B-16.pt``: the TorchScript (JIT) archive OpenAI released, or a
  plain state dict (optionally ``{"state_dict": {"module.<key>": ...}}``), with the OpenAI key layout;
* nothing: random initialisation (tests, benchmarks; no CLIP weights can be downloaded here).

OpenAI trained every released CLIP with QuickGELU (``x * sigmoid(1.702 x)``). Loading such weights into a
config that uses exact GELU (``ViT-B-16`` instead of ``ViT-B-16-quickgelu``) silently degrades features, so a
mismatch between the checkpoint's activation and the model config's warns (:class:`ActivationMismatchWarning`).
A JIT archive states its activation in its code; a plain state dict does not, and is assumed to be QuickGELU
unless ``checkpoint_activation`` says otherwise.

Tiny presets for tests (``mmr-tiny-32``, ``mmr-tiny-64``: width 64, 2 layers, 4 heads, patch 16, text width
32) live in ``model_configs/`` and are registered with open_clip's ``add_model_config``.
"""
from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mmreason.clip.towers import CLIPTextTower, CLIPVisionTower

PRESET_DIR = Path(__file__).with_name("model_configs")
ACTIVATIONS = ("auto", "quick_gelu", "gelu")


class ActivationMismatchWarning(UserWarning):
    """The checkpoint was trained with a different MLP activation than the model config uses."""


def register_presets() -> None:
    """Make the tiny presets in ``model_configs/`` known to open_clip (idempotent)."""
    import open_clip

    if "mmr-tiny-32" not in open_clip.list_models():
        open_clip.add_model_config(PRESET_DIR)


def model_config(model_name: str) -> dict:
    """The open_clip model config dict (``embed_dim``, ``vision_cfg``, ``text_cfg``, ``quick_gelu``)."""
    import open_clip

    register_presets()
    cfg = open_clip.get_model_config(model_name)
    if cfg is None:
        from mmreason.registry import did_you_mean

        names = open_clip.list_models()
        raise ValueError(f"unknown open_clip model config {model_name!r}{did_you_mean(model_name, names)} "
                         f"(see open_clip.list_models(); tiny presets: mmr-tiny-32, mmr-tiny-64)")
    return cfg


def _jit_activation(module: torch.jit.ScriptModule) -> str | None:
    """Read the MLP activation from a TorchScript archive's code (QuickGELU calls sigmoid)."""
    for name, sub in module.named_modules():
        if name.endswith("mlp.gelu"):
            try:
                code = sub.code
            except (RuntimeError, AttributeError):
                return None
            if "sigmoid" in code:
                return "quick_gelu"
            if "gelu" in code:
                return "gelu"
            return None
    return None


def read_openai_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], str | None]:
    """Read a local OpenAI-layout CLIP checkpoint (JIT archive or state dict).

    Returns ``(state_dict, activation)`` where activation is ``"quick_gelu"``/``"gelu"`` when the file says
    (JIT archives) and ``None`` when it cannot tell (state dicts).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: CLIP checkpoint not found")
    activation = None
    try:
        with warnings.catch_warnings():  # OpenAI ships TorchScript; torch's deprecation notice is not actionable
            warnings.simplefilter("ignore", FutureWarning)
            archive = torch.jit.load(str(path), map_location="cpu")
        state = dict(archive.state_dict())
        activation = _jit_activation(archive)
    except (RuntimeError, ValueError):
        try:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as e:  # pickle/zip errors have many types
            raise ValueError(f"{path}: neither a TorchScript archive nor a torch state dict ({e})") from e
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: expected a mapping of parameter names to tensors")
    state = {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state.items()}
    for key in ("input_resolution", "context_length", "vocab_size", "attn_mask"):  # not parameters
        state.pop(key, None)
    if "visual.conv1.weight" not in state:
        raise ValueError(f"{path}: not an OpenAI-layout CLIP ViT checkpoint (no 'visual.conv1.weight')")
    return state, activation


@dataclass
class CLIPTowers:
    """The two towers of one CLIP model, plus what is needed to tokenize and to check the build."""

    vision: CLIPVisionTower
    text: CLIPTextTower
    model_name: str
    logit_scale: float
    tokenizer: Any

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        """``[len(texts), context_length]`` token ids (open_clip's BPE tokenizer)."""
        return self.tokenizer(texts)


def build_clip(model_name: str, *, pretrained: str = "", checkpoint: str = "", num_frames: int = 0,
               checkpoint_activation: str = "auto", init_seed: int = 0, image_size: int = 0) -> CLIPTowers:
    """Build the vision and text towers of ``model_name`` and load weights.

    Args:
        model_name: open_clip config name (``ViT-B-16-quickgelu``, ``ViT-B-16``, ``mmr-tiny-32``...).
        pretrained: open_clip pretrained tag (``openai``, ``laion2b_s34b_b88k``...); empty = none.
        checkpoint: path of a local OpenAI checkpoint (JIT archive or state dict); empty = none.
        num_frames: frames per video for the learnable temporal embedding (0 = no temporal embedding).
        checkpoint_activation: activation the checkpoint was trained with; ``auto`` reads it from a JIT
            archive and assumes QuickGELU for a plain state dict (all OpenAI CLIPs use QuickGELU).
        init_seed: seed of the random initialisation (drawn from a forked RNG, so the global RNG is untouched):
            a randomly initialised frozen tower is the same in every process and every rebuild, which is what
            makes checkpoints of the trainable weights alone reloadable when no CLIP weights exist.
        image_size: input resolution other than the config's (0 = the config's); open_clip interpolates the
            positional embedding of tagged weights; not supported with a local checkpoint.
    """
    import open_clip

    if pretrained and checkpoint:
        raise ValueError("give either an open_clip pretrained tag or a local checkpoint, not both "
                         f"(pretrained={pretrained!r}, checkpoint={checkpoint!r})")
    if image_size and checkpoint:
        raise ValueError(f"image_size={image_size} cannot be combined with a local checkpoint ({checkpoint}); "
                         "use the checkpoint's resolution")
    if checkpoint_activation not in ACTIVATIONS:
        raise ValueError(f"checkpoint_activation {checkpoint_activation!r} is not one of {list(ACTIVATIONS)}")
    cfg = model_config(model_name)
    uses_quick_gelu = bool(cfg.get("quick_gelu", False))
    if pretrained:
        tags = open_clip.list_pretrained_tags_by_model(model_name)
        if pretrained not in tags and not Path(pretrained).is_file():
            raise ValueError(f"open_clip has no pretrained tag {pretrained!r} for {model_name!r}; known: {tags}")
        pretrained_cfg = open_clip.get_pretrained_cfg(model_name, pretrained) or {}
        if pretrained_cfg.get("quick_gelu", False) and not uses_quick_gelu:
            warnings.warn(f"pretrained weights {model_name}/{pretrained} were trained with QuickGELU but the "
                          f"model config uses GELU; use '{model_name}-quickgelu'", ActivationMismatchWarning,
                          stacklevel=2)
    root_logger = logging.getLogger()
    level = root_logger.level
    if not pretrained:  # open_clip logs a warning for every random init, which is intended here
        root_logger.setLevel(logging.ERROR)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(init_seed)
            clip = open_clip.create_model(model_name, pretrained=pretrained or None,
                                          force_image_size=image_size or None)
    finally:
        root_logger.setLevel(level)
    if checkpoint:
        state, found = read_openai_checkpoint(checkpoint)
        trained_with = found or ("quick_gelu" if checkpoint_activation == "auto" else checkpoint_activation)
        if checkpoint_activation != "auto" and found and found != checkpoint_activation:
            warnings.warn(f"{checkpoint}: the archive uses {found}, but checkpoint_activation says "
                          f"{checkpoint_activation}", ActivationMismatchWarning, stacklevel=2)
        if (trained_with == "quick_gelu") != uses_quick_gelu:
            warnings.warn(f"{checkpoint} was trained with {trained_with} but model config {model_name!r} uses "
                          f"{'quick_gelu' if uses_quick_gelu else 'gelu'}; features will be off "
                          f"(for OpenAI weights use a '-quickgelu' config)", ActivationMismatchWarning,
                          stacklevel=2)
        missing, unexpected = _load_state(clip, state, checkpoint, model_name)
        if missing or unexpected:
            raise ValueError(f"{checkpoint} does not match model config {model_name!r}: "
                             f"missing keys {missing[:5]}, unexpected keys {unexpected[:5]}")
    clip = clip.float().eval()
    tokenizer = open_clip.get_tokenizer(model_name)
    return CLIPTowers(vision=CLIPVisionTower(clip.visual, num_frames=num_frames), text=CLIPTextTower(clip),
                      model_name=model_name, logit_scale=float(clip.logit_scale.detach().exp()), tokenizer=tokenizer)


def _load_state(clip: nn.Module, state: dict, source: str, model_name: str) -> tuple[list, list]:
    own = clip.state_dict()
    wrong = [f"{k}: {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in state.items()
             if k in own and own[k].shape != v.shape]
    if wrong:
        raise ValueError(f"{source} does not match model config {model_name!r} (checkpoint vs config shapes): "
                         + "; ".join(wrong[:5]))
    result = clip.load_state_dict({k: v.to(own[k].dtype) if k in own else v for k, v in state.items()},
                                  strict=False)
    return list(result.missing_keys), list(result.unexpected_keys)


def freeze(module: nn.Module) -> nn.Module:
    """Set ``requires_grad=False`` on every parameter of ``module`` and return it."""
    for p in module.parameters():
        p.requires_grad_(False)
    return module
