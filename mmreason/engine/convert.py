"""Official (released) checkpoints -> mmreason run folders that ``mmreason eval`` and ``build_model`` load.

The generic half of ``mmreason convert``; the method half is ``MethodSpec.convert_released`` (released names ->
project names, e.g. :mod:`mmreason.methods.task_adapter_pp.released`). Steps:

1. read the file: ``torch.load(..., weights_only=True)`` (a file that needs full unpickling is refused unless
   ``allow_pickle=True``: only for files you trust) or a ``.safetensors`` file; the state dict is the file itself
   or its ``'state'`` (Task-Adapter++ ``run.py``), ``'model_state'`` (PySlowFast / STDD) or ``'state_dict'``
   entry; every ``module.`` name component (``nn.DataParallel`` / DDP wrappers, also mid-name as in
   ``feature.module.conv1.weight``) is removed;
2. build the model from the config, map the names with the method's ``convert_released``;
3. check: names the model does not have (unknown; shown with the file's name when the method renamed them),
   trainable weights the file lacks (missing) and shape mismatches are reported together in ONE
   :class:`~mmreason.engine.checkpoint.CheckpointError`;
4. frozen weights the file also holds (e.g. the frozen CLIP towers) are compared with the towers the config
   builds: when they are equal they are not stored (the config rebuilds them, as for any run); when any differs
   (other CLIP weights than the config's), every frozen tensor of the file is stored in the checkpoint with the
   trainable ones, and :func:`~mmreason.engine.checkpoint.load_checkpoint` loads them into the frozen towers
   (it loads every name the model has), so the run reproduces the released model either way;
5. write ``<output>/config.json`` and ``<output>/checkpoints/step_0000000/`` (``model.safetensors``,
   ``config.json``, ``released.json`` = source file, its SHA-256, what was stored) with the engine's
   checkpoint writer. An output folder that already holds checkpoints is refused (nothing is overwritten).

Example:
    >>> import mmreason
    >>> mmreason.convert_checkpoint("best.tar", "task_adapter_pp/hmdb51_5w1s", "runs/tapp_hmdb51_released")  # doctest: +SKIP
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Mapping

from mmreason.engine.checkpoint import (CHECKPOINTS_DIR, CONFIG_NAME, CheckpointError, _preview, checkpoint_name,
                                        list_checkpoints, publish_dir, temp_dir_for, trainable_state_dict,
                                        write_checkpoint_dir)

logger = logging.getLogger(__name__)
STATE_KEYS = ("state", "model_state", "state_dict")


def strip_module(name: str) -> str:
    """``feature.module.conv1.weight`` -> ``feature.conv1.weight`` (every ``module`` component removed)."""
    return ".".join(part for part in name.split(".") if part != "module")


def unwrap_state(obj: Any, source: str) -> dict:
    """The state dict inside a loaded checkpoint object (see the module docstring), ``module.`` stripped."""
    import torch

    state = None
    if isinstance(obj, Mapping):
        state = next((obj[k] for k in STATE_KEYS if isinstance(obj.get(k), Mapping)), None)
        if state is None and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            state = obj
    if state is None:
        found = list(obj)[:8] if isinstance(obj, Mapping) else type(obj).__name__
        raise CheckpointError(f"{source}: expected a state dict, or a dict holding one under "
                              f"{' / '.join(repr(k) for k in STATE_KEYS)}; found {found}")
    out: dict = {}
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{source}: entry {key!r} of the state dict is a {type(value).__name__}, "
                                  "not a tensor")
        new = strip_module(str(key))
        if new in out:
            raise CheckpointError(f"{source}: names {key!r} and another one both become {new!r} without 'module.'")
        out[new] = value
    return out


def read_released_state(path: str | os.PathLike, allow_pickle: bool = False) -> dict:
    """Read a released checkpoint file into a flat ``{name: tensor}`` dict (``module.`` stripped)."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: released checkpoint not found")
    if path.suffix == ".safetensors":
        from mmreason.engine.checkpoint import read_weights

        return unwrap_state(read_weights(path), str(path))
    try:
        obj = torch.load(path, map_location="cpu", weights_only=not allow_pickle)
    except Exception as e:  # UnpicklingError, zip/EOF errors, ... have many types
        hint = ("" if allow_pickle else "; if it needs full unpickling and you trust it, pass allow_pickle=True "
                "(CLI: --allow-pickle)")
        raise CheckpointError(f"{path}: cannot be read as a torch checkpoint ({type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else ''}){hint}") from e
    return unwrap_state(obj, str(path))


def convert_released_checkpoint(method: Any, cfg: Any, released: str | os.PathLike, output: str | os.PathLike, *,
                                allow_pickle: bool = False) -> dict:
    """Convert the released checkpoint ``released`` of ``method`` (a MethodSpec) for the model that ``cfg``
    builds into the run folder ``output``. Returns ``{"run_dir", "checkpoint", "method", "trainable",
    "frozen_stored", "frozen_differing"}``."""
    import torch

    from mmreason.config import merge, save_config
    from mmreason.utils.hashing import sha256_file

    if method.convert_released is None:
        raise ValueError(f"method {method.name!r} has no converter for released checkpoints")
    output = Path(output)
    if list_checkpoints(output):
        raise CheckpointError(f"{output}: already holds checkpoints; choose another output folder")
    state = read_released_state(released, allow_pickle)  # before the model: a bad file fails cheaply
    if hasattr(cfg, "train"):
        cfg = merge(cfg, {"train": {"output_dir": str(output)}})
    model = method.build_model(cfg)
    mapped = method.convert_released(state, cfg)
    own = model.state_dict()
    trainable = set(trainable_state_dict(model))
    origin = {id(v): k for k, v in state.items()}  # renamed tensors are the file's own objects
    unknown = sorted(k if origin.get(id(v), k) == k else f"{origin[id(v)]} (as {k})"
                     for k, v in mapped.items() if k not in own)
    missing = sorted(k for k in trainable if k not in mapped)
    shapes = sorted(f"{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}" for k, v in mapped.items()
                    if k in own and tuple(v.shape) != tuple(own[k].shape))
    if unknown or missing or shapes:
        raise CheckpointError(
            f"{released}: does not fit the {method.name} model of this config (after mapping the released names); "
            f"unknown {len(unknown)} {_preview(unknown, 20)}, missing {len(missing)} {_preview(missing, 20)}, "
            f"wrong shape {len(shapes)} {_preview(shapes, 20)}. Check the config's architecture fields "
            f"(layers with adapters, frames, CLIP model, dataset-specific heads) against the released run")
    weights = {k: mapped[k].to(own[k].dtype) for k in sorted(trainable)}
    frozen = sorted(k for k in mapped if k not in trainable)
    differing = [k for k in frozen if not torch.equal(mapped[k].to(own[k].dtype), own[k])]
    if differing:
        logger.warning("%s: %d frozen tensors differ from the weights this config builds (e.g. %s); storing all %d "
                       "frozen tensors of the file in the checkpoint", released, len(differing), differing[0],
                       len(frozen))
        weights.update({k: mapped[k].to(own[k].dtype) for k in frozen})
    output.mkdir(parents=True, exist_ok=True)
    save_config(cfg, output / CONFIG_NAME)
    final = output / CHECKPOINTS_DIR / checkpoint_name(0)
    tmp = temp_dir_for(final)
    info = {"source": str(Path(released).resolve()), "sha256": sha256_file(released), "method": method.name,
            "trainable": len(trainable), "frozen_stored": len(frozen) if differing else 0,
            "frozen_differing": len(differing)}
    write_checkpoint_dir(tmp, weights=weights, config=cfg, extra_json={"released.json": info})
    publish_dir(tmp, final)
    return {"run_dir": str(output), "checkpoint": str(final), **info}
