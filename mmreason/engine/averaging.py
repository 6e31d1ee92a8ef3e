"""Weight averaging over saved checkpoints: uniform (SWA), Gaussian, Beta and exponential (EMA) weights.

STDD (arXiv 2412.09895) averages its per-epoch checkpoints after training with the repository's
``weight_average_tool.py`` (specs/clip_action_recognition.md §3.4), and Open-MeDe (arXiv 2502.20158, §4 of the
same spec) self-ensembles the optimisation trajectory with Gaussian weights over epochs 0..22, the initial
CLIP weights counting as epoch 0. The four rules, for checkpoints ``0..n-1`` (oldest first):

* ``uniform``:  ``w_i = 1 / n`` (stochastic weight averaging).
* ``gaussian``: ``w_i ∝ N(p_i; mean, std)`` with ``p_i`` the checkpoint's position (default: its index, so with
  one checkpoint per epoch and the initial weights first, ``p_i`` is the epoch number). Defaults mean 15,
  std 10 are STDD's values for its 22-epoch schedule.
* ``beta``:     ``w_i ∝ Beta(x_i; alpha, beta)`` at ``x_i = (i + 0.5) / n`` in (0, 1); default
  ``alpha = beta = 0.5`` (STDD), which favours both ends of the trajectory.
* ``ema``:      the result of ``avg = decay * avg + (1 - decay) * ckpt_i`` started at ``avg = ckpt_0``, i.e.
  ``w_0 = decay^(n-1)`` and ``w_i = (1 - decay) * decay^(n-1-i)``; default decay 0.9 (STDD).

All weights are normalised to sum to 1. :func:`averaging_coefficients` is the pure rule; :func:`average_checkpoints`
streams the checkpoints (one in memory at a time) into a float64 accumulator.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

METHODS = ("uniform", "gaussian", "beta", "ema")


def averaging_coefficients(num_checkpoints: int, method: str = "uniform", *,
                           positions: Sequence[float] | None = None, mean: float = 15.0, std: float = 10.0,
                           alpha: float = 0.5, beta: float = 0.5, decay: float = 0.9) -> list[float]:
    """Coefficients ``w_0..w_{n-1}`` (oldest checkpoint first) that sum to 1 (see the module docstring).

    ``positions`` overrides where each checkpoint sits: epoch numbers for ``gaussian`` (default ``0..n-1``),
    points in (0, 1) for ``beta`` (default ``(i + 0.5) / n``); ``uniform`` and ``ema`` ignore it.
    """
    n = int(num_checkpoints)
    if n < 1:
        raise ValueError("weight averaging needs at least one checkpoint")
    if method not in METHODS:
        raise ValueError(f"averaging method {method!r} is not one of {list(METHODS)}")
    if positions is not None and len(positions) != n:
        raise ValueError(f"got {len(positions)} positions for {n} checkpoints")

    if method == "uniform":
        raw = [1.0] * n
    elif method == "gaussian":
        if std <= 0:
            raise ValueError(f"gaussian averaging needs std > 0, got {std}")
        pos = list(positions) if positions is not None else list(range(n))
        # the density's constant factor cancels in the normalisation
        raw = [math.exp(-0.5 * ((p - mean) / std) ** 2) for p in pos]
    elif method == "beta":
        if alpha <= 0 or beta <= 0:
            raise ValueError(f"beta averaging needs alpha, beta > 0, got {alpha}, {beta}")
        xs = list(positions) if positions is not None else [(i + 0.5) / n for i in range(n)]
        if any(not 0.0 < x < 1.0 for x in xs):
            raise ValueError(f"beta averaging positions must lie in (0, 1), got {xs}")
        log_pdf = [(alpha - 1) * math.log(x) + (beta - 1) * math.log1p(-x) for x in xs]
        top = max(log_pdf)
        raw = [math.exp(v - top) for v in log_pdf]
    else:  # ema
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"ema averaging needs 0 <= decay < 1, got {decay}")
        raw = [decay ** (n - 1)] + [(1 - decay) * decay ** (n - 1 - i) for i in range(1, n)]
    total = sum(raw)
    if not total > 0:
        raise ValueError(f"{method} averaging gave all-zero weights at positions {positions}")
    return [w / total for w in raw]


def weighted_average(state_dicts: Sequence[Mapping[str, Any]], coefficients: Sequence[float]) -> dict:
    """``sum_i c_i * state_dicts[i]`` for floating tensors (accumulated in float64, returned in the input dtype);
    integer tensors (e.g. BatchNorm ``num_batches_tracked``) are taken from the last (newest) state dict."""
    acc = _Accumulator()
    for i, (sd, c) in enumerate(zip(state_dicts, coefficients, strict=True)):
        acc.add(sd, c, source=f"state dict {i}")
    return acc.result()


def average_checkpoints(paths: Sequence[str | os.PathLike], method: str = "uniform", *,
                        initial: Any = None, positions: Sequence[float] | None = None, **params: Any) -> dict:
    """Average the weights of checkpoint folders (or ``.safetensors`` files), oldest first.

    ``initial`` (a ``{name: tensor}`` dict, or a module whose :func:`trainable_state_dict` is taken) is put
    before the checkpoints as checkpoint 0 — Open-MeDe's "initial CLIP as epoch 0". ``params`` go to
    :func:`averaging_coefficients` (``mean``, ``std``, ``alpha``, ``beta``, ``decay``). Returns ``{name: tensor}``.
    """
    sources = _sources(paths, initial)
    coefficients = averaging_coefficients(len(sources), method, positions=positions, **params)
    acc = _Accumulator()
    for (label, load), c in zip(sources, coefficients):
        acc.add(load(), c, source=label)
    return acc.result()


def save_averaged(paths: Sequence[str | os.PathLike], out_dir: str | os.PathLike, method: str = "uniform", *,
                  initial: Any = None, positions: Sequence[float] | None = None, **params: Any) -> Path:
    """Average checkpoints and write the result as a checkpoint folder (``model.safetensors``, the newest
    source's ``config.json`` when it has one, and ``averaging.json`` recording method, coefficients, sources).
    Load it with ``load_checkpoint(model, out_dir)``."""
    import shutil

    from mmreason.engine.checkpoint import CONFIG_NAME, publish_dir, temp_dir_for, write_checkpoint_dir

    sources = _sources(paths, initial)
    coefficients = averaging_coefficients(len(sources), method, positions=positions, **params)
    state = average_checkpoints(paths, method, initial=initial, positions=positions, **params)
    out_dir = Path(out_dir)
    tmp = temp_dir_for(out_dir)
    if tmp.exists():
        shutil.rmtree(tmp)
    record = {"method": method, "params": params, "positions": list(positions) if positions is not None else None,
              "sources": [label for label, _ in sources], "coefficients": coefficients}
    write_checkpoint_dir(tmp, weights=state, extra_json={"averaging.json": record})
    newest = Path(paths[-1]) if paths else None
    if newest is not None and (newest / CONFIG_NAME).is_file():
        shutil.copyfile(newest / CONFIG_NAME, tmp / CONFIG_NAME)
    return publish_dir(tmp, out_dir)


def _sources(paths: Sequence[str | os.PathLike], initial: Any) -> list[tuple[str, Any]]:
    """``[(label, loader)]`` oldest first; loaders read lazily so only one checkpoint is in memory at a time."""
    from mmreason.engine.checkpoint import read_weights, resolve_checkpoint, trainable_state_dict

    out: list[tuple[str, Any]] = []
    if initial is not None:
        state = initial if isinstance(initial, Mapping) else trainable_state_dict(initial)
        out.append(("<initial weights>", lambda: state))
    for p in paths:
        weights_file = resolve_checkpoint(p)
        out.append((str(p), lambda f=weights_file: read_weights(f)))
    if not out:
        raise ValueError("weight averaging needs at least one checkpoint path")
    return out


class _Accumulator:
    """Running ``sum_i c_i * state_i`` with key checks that name the offending source."""

    def __init__(self):
        self.sums: dict = {}      # float name -> float64 running sum
        self.dtypes: dict = {}    # float name -> dtype to return
        self.newest: dict = {}    # integer name -> tensor of the newest source
        self.names: set = set()
        self.first_source = None

    def add(self, state: Mapping[str, Any], coefficient: float, source: str) -> None:
        import torch

        if self.first_source is None:
            self.first_source = source
            for k, v in state.items():
                if v.is_floating_point():
                    self.sums[k] = torch.zeros(v.shape, dtype=torch.float64)
                    self.dtypes[k] = v.dtype
            self.names = set(state)
        if set(state) != self.names:
            missing, extra = sorted(self.names - set(state)), sorted(set(state) - self.names)
            raise ValueError(f"{source}: its weights differ from those of {self.first_source}: "
                             f"missing {missing[:8]}, unexpected {extra[:8]}")
        for k, v in state.items():
            if k not in self.sums:
                self.newest[k] = v.detach().cpu().clone()
                continue
            if tuple(v.shape) != tuple(self.sums[k].shape):
                raise ValueError(f"{source}: {k} has shape {tuple(v.shape)}, expected {tuple(self.sums[k].shape)}")
            self.sums[k] += coefficient * v.detach().to("cpu", torch.float64)

    def result(self) -> dict:
        out = {k: s.to(self.dtypes[k]) for k, s in self.sums.items()}
        out.update(self.newest)
        return out
