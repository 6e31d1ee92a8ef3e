"""Proof by ablation for the inputs ICVL credits (arXiv 2505.01713 abstract: visual tokens, VLM intention, their
fusion). On the synthetic task with ``data.goal_cue`` every goal shares one observed action sequence and has its own
future, so the goal is visible through ONE input only; in-context examples are off (``num_examples=0``) so they
cannot leak it. A trained tiny ICVL must then (1) predict the future exactly, (2) fail when that input is zeroed,
and (3) follow the input when it is swapped with a window of another goal (its answer becomes the other goal's
future). The model answers K = 1 sequence: with K = 5 candidates and 3 goals, a model blind to the cue could list
every goal's future and score a perfect min-over-K edit distance. Chance: about 2/3 of the windows wrong."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

pytestmark = pytest.mark.slow   # each case trains a tiny run (about 15 s on one thread)


def _train(tmp_path, *overrides):
    import mmreason.api
    from mmreason.utils.threads import torch_threads

    with torch_threads(1):
        mmreason.api.train("icvl/tiny_synthetic", [f"train.output_dir={tmp_path}", "model.num_examples=0",
                                                   "model.num_sequences=1", *overrides])
    _, cfg = mmreason.api.load_experiment(tmp_path)
    model = mmreason.api.build_model(checkpoint=tmp_path)
    model.eval()
    return model, cfg


def _action_ed(model, cfg, windows, labels=None) -> float:
    """Action edit distance of the model's answer on ``windows`` against ``labels`` (default: their own)."""
    from mmreason.methods.icvl import predict
    from mmreason.methods.icvl.data import ICVLDataset, example_bank, load_vocab, text_embedder
    from mmreason.metrics.anticipation import ego4d_lta_metrics

    ds = ICVLDataset(cfg, windows, example_bank(cfg), load_vocab(cfg), text_embedder(cfg.model.text_embedder))
    out = predict(model, ds, 24, seed=0)
    y = np.array([w.future for w in (labels or windows)])                   # [N, Z, 2]
    return ego4d_lta_metrics(out["verbs"], out["nouns"], y[..., 0], y[..., 1], cfg.data.num_nouns)["action_ED"]


def _donors(windows) -> list:
    """For each window, the next window (cyclically) whose goal, i.e. future, differs."""
    goals = [tuple(w.future) for w in windows]
    n = len(windows)
    return [windows[next((i + k) % n for k in range(1, n) if goals[(i + k) % n] != goals[i])] for i in range(n)]


def _check(model, cfg, field: str, empty):
    from mmreason.methods.icvl.data import load_windows

    windows = load_windows(cfg, "val")
    donors = _donors(windows)
    assert len({tuple(w.observed) for w in windows}) == 1                   # the observed actions tell nothing
    full = _action_ed(model, cfg, windows)
    removed = _action_ed(model, cfg, [replace(w, **{field: empty(getattr(w, field))}) for w in windows])
    swapped = [replace(w, **{field: getattr(d, field)}) for w, d in zip(windows, donors)]
    follows = _action_ed(model, cfg, swapped, labels=donors)                # scored against the donors' futures
    wrong = _action_ed(model, cfg, swapped)
    print(f"{field}: full {full:.3f}, removed {removed:.3f}, swapped vs own future {wrong:.3f}, "
          f"vs donor future {follows:.3f}")
    assert full < 0.1
    assert removed > full + 0.4
    assert follows < 0.1 and wrong > 0.8


def test_the_goal_only_in_the_visual_tokens(tmp_path):
    model, cfg = _train(tmp_path, "data.goal_cue=visual")
    _check(model, cfg, "visual", np.zeros_like)


def test_the_goal_only_in_the_intention(tmp_path):
    model, cfg = _train(tmp_path, "data.goal_cue=intention")
    _check(model, cfg, "intention", lambda text: "")


def test_the_intention_reaches_the_llm_through_the_fusion(tmp_path):
    """With the intention kept out of the text prompt, only the intention-enhanced visual tokens carry it: with the
    fusion the model reads the goal; trained without it (``model.fusion=false``) it cannot."""
    from mmreason.methods.icvl.data import load_windows

    model, cfg = _train(tmp_path / "fused", "data.goal_cue=intention", "model.intention_in_prompt=false")
    windows = load_windows(cfg, "val")
    assert "Intention:" not in _prompt(cfg, windows[0])
    _check(model, cfg, "intention", lambda text: "")
    unfused, cfg_off = _train(tmp_path / "unfused", "data.goal_cue=intention", "model.intention_in_prompt=false",
                              "model.fusion=false")
    without = _action_ed(unfused, cfg_off, windows)
    print(f"fusion off: {without:.3f}")
    assert without > 0.4


def _prompt(cfg, window) -> str:
    from mmreason.methods.icvl.data import build_prompt

    return build_prompt(cfg.model, [], ["take knife"], window.intention, cfg.model.num_future)
