"""CBCG end to end: the engine's Trainer on the tiny config, checkpoint reload, evaluation; real-format files."""
from pathlib import Path

import numpy as np
import pytest
import torch

from mmreason.config import apply_overrides, merge, read_yaml
from mmreason.methods.cbcg import METHOD, CbcgExperiment

TINY_YAML = Path(__file__).resolve().parents[2] / "mmreason" / "methods" / "cbcg" / "configs" / "tiny_synthetic.yaml"


@pytest.mark.slow
def test_cbcg_tiny_trainer_run_and_reload(tmp_path, one_torch_thread):
    from mmreason.engine import Trainer, load_checkpoint

    cfg = apply_overrides(merge(CbcgExperiment(), read_yaml(TINY_YAML)),
                          [f"train.output_dir={tmp_path / 'run'}", "train.max_steps=80", "model.test_guidance=0.5"])
    model = METHOD.build_model(cfg)
    result = Trainer(model, cfg.train, METHOD.build_dataset(cfg, "train"), collate_fn=METHOD.collate_fn,
                     run_dir=cfg.train.output_dir, config=cfg).fit()
    assert result.global_step == 80
    metrics = METHOD.evaluate(model, cfg, "test", None)
    assert metrics["auc"] > 0.6  # 80 steps: learning, not converged (chance 0.5)
    reloaded = METHOD.build_model(cfg)
    load_checkpoint(reloaded, cfg.train.output_dir)
    # the cluster centres that test-time guided scoring needs travel in the checkpoint
    assert reloaded.cluster_branch.centres.abs().sum() > 0
    assert torch.equal(reloaded.cluster_branch.centres, model.cluster_branch.centres)
    assert METHOD.evaluate(reloaded, cfg, "test", None)["auc"] == pytest.approx(metrics["auc"], abs=1e-6)


def test_cbcg_reads_ucf_style_files(tmp_path):
    rng = np.random.default_rng(0)
    lines = {"train": [], "test": []}
    gt = []
    for split, names in (("train", ["Normal_Videos_001_x264", "Normal_Videos_002_x264", "Arson001_x264"]),
                         ("test", ["Arson010_x264", "Normal_Videos_050_x264"])):
        for name in names:
            t = int(rng.integers(3, 6))
            np.save(tmp_path / f"{name}_i3d.npy", rng.standard_normal((t, 10, 16)).astype(np.float32))
            lines[split].append(f"{name}_i3d.npy")
            if split == "test":
                gt.append(np.r_[np.ones(16), np.zeros(16 * (t - 1))] if "Arson" in name else np.zeros(16 * t))
        (tmp_path / f"{split}.list").write_text("\n".join(lines[split]))
    np.save(tmp_path / "gt.npy", np.concatenate(gt))
    cfg = apply_overrides(CbcgExperiment(), {"model": {"feature_dim": 16, "hidden_dims": [8], "embed_dim": 4},
                                             "data": {"dataset": "ucf_crime", "train_list": str(tmp_path / "train.list"),
                                                      "test_list": str(tmp_path / "test.list"),
                                                      "gt_file": str(tmp_path / "gt.npy")}})
    train = METHOD.build_dataset(cfg, "train")
    assert len(train) == 2 and train[0]["abnormal"].shape == (10, 32, 16)
    model = METHOD.build_model(cfg)
    metrics = METHOD.evaluate(model, cfg, "test", None)
    assert metrics["num_videos"] == 2
    # frame AUC over the gt-ucf.npy labels in list order against the x16-expanded snippet scores (RTFM's test)
    from sklearn.metrics import roc_auc_score
    from mmreason.methods.cbcg.evaluation import video_frame_scores

    frames = np.concatenate(video_frame_scores(model, METHOD.build_dataset(cfg, "test")))
    assert metrics["auc"] == pytest.approx(roc_auc_score(np.concatenate(gt), frames), abs=1e-12)
    with pytest.raises(ValueError, match="gt_file"):
        METHOD.build_dataset(apply_overrides(cfg, ["data.gt_file="]), "test")
