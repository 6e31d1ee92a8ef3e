"""Checkpoints: trainable weights as safetensors, the resolved config, and the trainer state for exact resume.

Layout of a run folder::

    run_dir/
      config.json                      resolved experiment config (mmreason.config.save_config)
      metrics.jsonl                    one JSON line per log / eval event
      checkpoints/step_0000100/
        model.safetensors              trainable parameters (by name) + buffers of modules that own one
        config.json                    the same resolved config
        trainer_state.pt               optimizer, scheduler, counters, RNG states, data-order state
        rank{r}_state.pt               RNG states of process r > 0 (multi-process runs)
        peft/<module>/                 LoRA/PEFT adapters in PEFT's own format (adapter_config.json +
                                       adapter_model.safetensors), loadable with peft.PeftModel.from_pretrained

A checkpoint folder is written under a temporary name and renamed into place, so a crash never leaves a
half-written ``step_*`` folder. Frozen weights (e.g. a frozen CLIP tower) are not stored: they are rebuilt by the
model's constructor, so a checkpoint is as small as the trained part.
"""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any, Mapping

WEIGHTS_NAME = "model.safetensors"
STATE_NAME = "trainer_state.pt"
CONFIG_NAME = "config.json"
CHECKPOINTS_DIR = "checkpoints"
PEFT_DIR = "peft"
_STEP_DIR = re.compile(r"^step_(\d+)$")


class CheckpointError(ValueError):
    """A checkpoint is missing, malformed or does not match the model; the message names the path."""


def checkpoint_name(step: int) -> str:
    return f"step_{step:07d}"


def trainable_state_dict(model) -> dict:
    """``{name: tensor}`` of what training changes: every parameter with ``requires_grad=True``, plus the
    persistent buffers of modules that own such a parameter directly (e.g. BatchNorm running statistics of a
    trained norm layer). Tensors are detached CPU copies, contiguous, ready for safetensors."""
    out = {}
    for module_name, module in model.named_modules():
        own_params = list(module.named_parameters(recurse=False))
        if not any(p.requires_grad for _, p in own_params):
            continue
        prefix = f"{module_name}." if module_name else ""
        for name, p in own_params:
            if p.requires_grad:
                out[prefix + name] = p
        non_persistent = getattr(module, "_non_persistent_buffers_set", set())
        for name, b in module.named_buffers(recurse=False):
            if b is not None and name not in non_persistent:
                out[prefix + name] = b
    # Copies, so the saved tensors never alias live weights (a parameter shared by two modules appears under
    # both names, as in model.state_dict()).
    return {name: t.detach().to("cpu").contiguous().clone() for name, t in out.items()}


def save_weights(state: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Write a ``{name: tensor}`` dict as safetensors (atomically)."""
    from safetensors.torch import save_file

    from mmreason.utils.io import atomic_write_with

    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
    return atomic_write_with(path, lambda tmp: save_file(tensors, tmp, metadata={"format": "pt"}))


def read_weights(path: str | os.PathLike) -> dict:
    """Read a safetensors file; a missing or malformed file raises :class:`CheckpointError` naming it."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: weights file not found")
    try:
        return load_file(str(path))
    except Exception as e:  # safetensors raises its own SafetensorError / OSError on bad headers
        raise CheckpointError(f"{path}: not a readable safetensors file ({type(e).__name__}: {e})") from e


def list_checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """Complete ``step_*`` checkpoint folders of a run, oldest first (temporary folders are ignored)."""
    root = Path(run_dir) / CHECKPOINTS_DIR
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        m = _STEP_DIR.match(child.name)
        if m and child.is_dir() and (child / WEIGHTS_NAME).is_file():
            found.append((int(m.group(1)), child))
    return [p for _, p in sorted(found)]


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The newest complete checkpoint folder of ``run_dir``, or ``None`` when there is none."""
    ckpts = list_checkpoints(run_dir)
    return ckpts[-1] if ckpts else None


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """A checkpoint folder, a run folder (-> its newest checkpoint) or a ``.safetensors`` file -> weights file."""
    path = Path(path)
    if path.is_file():
        return path
    if (path / WEIGHTS_NAME).is_file():
        return path / WEIGHTS_NAME
    if path.is_dir():
        newest = latest_checkpoint(path)
        if newest is not None:
            return newest / WEIGHTS_NAME
        raise CheckpointError(f"{path}: neither a checkpoint folder (no {WEIGHTS_NAME}) nor a run folder with "
                              f"checkpoints under {CHECKPOINTS_DIR}/")
    raise CheckpointError(f"{path}: checkpoint not found")


def load_checkpoint(model, path: str | os.PathLike, strict: bool = True) -> dict:
    """Load trained weights into ``model`` in place.

    ``path`` is a checkpoint folder, a run folder (its newest checkpoint is used) or a ``.safetensors`` file.
    With ``strict=True`` the checkpoint must hold exactly the model's trainable tensors (see
    :func:`trainable_state_dict`): missing and unexpected names raise :class:`CheckpointError` listing them.
    With ``strict=False`` names the model does not have are ignored and missing ones keep their values.
    Returns ``{"path", "loaded", "missing", "unexpected"}``.
    """
    import torch

    weights_file = resolve_checkpoint(path)
    weights = read_weights(weights_file)
    model_state = model.state_dict()
    expected = set(trainable_state_dict(model))
    unexpected = sorted(k for k in weights if k not in model_state)
    missing = sorted(k for k in expected if k not in weights)
    if strict and (missing or unexpected):
        raise CheckpointError(
            f"{weights_file}: does not match the model's trainable weights; "
            f"missing {len(missing)} {_preview(missing)}, unexpected {len(unexpected)} {_preview(unexpected)}")
    usable = {k: v for k, v in weights.items() if k in model_state}
    bad_shapes = [f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(model_state[k].shape)}"
                  for k, v in usable.items() if tuple(v.shape) != tuple(model_state[k].shape)]
    if bad_shapes:
        raise CheckpointError(f"{weights_file}: shape mismatch for {len(bad_shapes)} tensors: {_preview(bad_shapes)}")
    with torch.no_grad():
        model.load_state_dict(usable, strict=False)
    return {"path": weights_file, "loaded": sorted(usable), "missing": missing, "unexpected": unexpected}


def _preview(names: list[str], limit: int = 8) -> str:
    if not names:
        return "[]"
    shown = ", ".join(names[:limit])
    return f"[{shown}{', ...' if len(names) > limit else ''}]"


def write_checkpoint_dir(folder: str | os.PathLike, *, weights: Mapping[str, Any], config: Any = None,
                         trainer_state: Mapping[str, Any] | None = None, extra_json: Mapping[str, Any] | None = None
                         ) -> Path:
    """Fill ``folder`` (normally a temporary one) with the files of one checkpoint."""
    import torch

    from mmreason.utils.io import atomic_write_json

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_weights(weights, folder / WEIGHTS_NAME)
    if config is not None:
        from mmreason.config import save_config

        save_config(config, folder / CONFIG_NAME)
    if trainer_state is not None:
        torch.save(dict(trainer_state), folder / STATE_NAME)
    for name, obj in (extra_json or {}).items():
        atomic_write_json(folder / name, obj)
    return folder


def peft_modules(model) -> dict[str, Any]:
    """``{module name: module}`` of the outermost submodules that carry PEFT adapters (a ``peft.PeftModel``, or a
    module adapters were injected into with ``peft.inject_adapter_in_model``); ``""`` names ``model`` itself."""
    found: dict[str, Any] = {}
    for name, module in model.named_modules():
        if isinstance(getattr(module, "peft_config", None), dict) and module.peft_config and not any(
                name == outer or name.startswith(outer + ".") or outer == "" for outer in found):
            found[name] = module
    return found


def save_peft_adapters(model, folder: str | os.PathLike) -> list[Path]:
    """Save every PEFT adapter of ``model`` under ``folder/peft/<module name>/`` in PEFT's own format, so
    ``peft.PeftModel.from_pretrained(base, that_folder)`` loads it into a fresh base model (adapters other than
    ``default`` go to a sub-folder named after them, as PEFT does). Returns the folders written."""
    modules = peft_modules(model)
    if not modules:
        return []
    from peft import PeftModel, get_peft_model_state_dict
    from safetensors.torch import save_file

    written = []
    for name, module in modules.items():
        out = Path(folder) / PEFT_DIR / (name or "model")
        if isinstance(module, PeftModel):
            module.save_pretrained(str(out))
            written.append(out)
            continue
        for adapter, adapter_cfg in module.peft_config.items():  # injected adapters: no PeftModel wrapper
            target = out if adapter == "default" else out / adapter
            target.mkdir(parents=True, exist_ok=True)
            adapter_cfg.save_pretrained(str(target))
            state = get_peft_model_state_dict(module, adapter_name=adapter)
            # PeftModel names the wrapped module base_model.model; injected adapters have no wrapper
            save_file({f"base_model.model.{k}": v.detach().cpu().contiguous() for k, v in state.items()},
                      str(target / "adapter_model.safetensors"), metadata={"format": "pt"})
            written.append(target)
    return written


def temp_dir_for(final: Path) -> Path:
    return final.with_name(f".tmp-{final.name}")


def publish_dir(tmp: Path, final: Path) -> Path:
    """Rename a fully written temporary folder to its final name (replacing an older one of that name)."""
    from mmreason.utils.io import atomic_replace_dir

    return atomic_replace_dir(tmp, final)


def prune_checkpoints(run_dir: str | os.PathLike, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` step checkpoints (``keep <= 0`` keeps all); returns the deleted."""
    if keep <= 0:
        return []
    ckpts = list_checkpoints(run_dir)
    doomed = ckpts[:-keep]
    for p in doomed:
        shutil.rmtree(p)
    return doomed


def read_trainer_state(ckpt_dir: str | os.PathLike) -> dict:
    """Read ``trainer_state.pt`` of a checkpoint folder (written by this engine; it holds pickled RNG states)."""
    import torch

    path = Path(ckpt_dir) / STATE_NAME
    if not path.is_file():
        raise CheckpointError(f"{path}: trainer state not found; this checkpoint cannot be resumed from "
                              f"(load its weights with load_checkpoint instead)")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        raise CheckpointError(f"{path}: unreadable trainer state ({type(e).__name__}: {e})") from e
