"""ADSM learns the synthetic scene-dependent anomaly task; scene conditioning is what makes it solvable.

Moving squares (mmreason.data.vad.make_moving_square_videos, rule="colour", shared background): the square is red
in scene 0 and green in scene 1, and an anomaly paints it the other scene's colour. Without the scene id both
colours are normal, so only a scene-conditioned model can flag the inside of an abnormal interval (clips that
straddle its boundaries show a colour change, which any model trained on normal clips can flag).
"""
import numpy as np
import pytest
import torch

from adsm_training import train_steps
from mmreason.utils.threads import torch_threads
from mmreason.methods.adsm.evaluation import score_dataset
from mmreason.metrics.anomaly import roc_auc

from mmreason.config import apply_overrides
from mmreason.methods.adsm import METHOD, AdsmExperiment

TINY = {
    "model": dict(image_size=32, patch_size=8, num_frames=4, hidden_dim=64, depth=2, num_heads=4, cond_dim=64,
                  num_scenes=2, num_levels=8),
    "data": dict(dataset="synthetic", synthetic_rule="colour", synthetic_background="shared",
                 synthetic_train_videos=16, synthetic_test_videos=16, synthetic_frames=24, seed=0),
    "eval": dict(batch_size=64, clip_stride=1, segment_len=4),
}


def _train_and_eval(use_scene: bool, steps: int = 200) -> dict:
    cfg = apply_overrides(AdsmExperiment(), {**TINY, "model": {**TINY["model"], "use_scene": use_scene}})
    torch.manual_seed(0)
    model = train_steps(METHOD.build_model(cfg), METHOD.build_dataset(cfg, "train"), steps)
    metrics = METHOD.evaluate(model, cfg, "test")
    # clip-level AUC on the clips that lie wholly inside or wholly outside an abnormal interval
    test = METHOD.build_dataset(cfg, "test")
    scored = score_dataset(model, test, cfg)
    clip_labels = np.array([test.videos[v].labels[f] for v, f in zip(scored["video"], scored["frames"])])  # [M, n]
    pure = clip_labels.min(1) == clip_labels.max(1)
    levels = scored["scores"][pure]  # [M', L], each level min-max normalised over the test clips, then averaged
    levels = (levels - levels.min(0)) / (levels.max(0) - levels.min(0) + 1e-12)
    # per scene, then averaged: a colour preference of a scene-blind model helps in one scene and hurts in the other
    scenes = np.array([test.videos[v].scene for v in scored["video"]])[pure]
    per_scene = [roc_auc(levels[scenes == s].mean(1), clip_labels[pure, 0][scenes == s]) for s in (0, 1)]
    metrics["pure_clip_auc"] = float(np.mean(per_scene))
    metrics["pure_clip_auc_per_scene"] = per_scene
    metrics["pure_abnormal_clips"] = int(clip_labels[pure, 0].sum())
    return metrics


@pytest.fixture(scope="module")
def results():
    with torch_threads(1):  # tiny tensors: more threads only add synchronisation
        return {"scene": _train_and_eval(True), "no_scene": _train_and_eval(False)}


@pytest.mark.slow
def test_adsm_detects_scene_dependent_anomalies(results):
    r = results["scene"]
    assert r["num_videos"] == 16
    # seen: micro 0.75, macro 0.83 (pad_all, the default) / 0.77 (skip)
    assert r["auc_micro"] > 0.65 and r["auc_macro_pad_all"] > 0.7 and r["auc_macro_skip"] > 0.65, r


@pytest.mark.slow
def test_scene_conditioning_helps_on_scene_dependent_anomalies(results):
    with_scene, without = results["scene"], results["no_scene"]
    assert with_scene["pure_abnormal_clips"] >= 40
    # seen: with scene 0.75 micro / 0.73 on pure clips; without 0.42 / 0.47 (chance: it cannot know the scene)
    assert with_scene["auc_micro"] > without["auc_micro"] + 0.15, results
    assert with_scene["pure_clip_auc"] > without["pure_clip_auc"] + 0.12, results
    assert abs(without["pure_clip_auc"] - 0.5) < 0.15, results
