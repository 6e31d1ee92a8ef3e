"""FBAE end to end: the engine's Trainer on the tiny config, checkpoint reload, evaluation."""
from pathlib import Path

import pytest
import torch

from mmreason.config import apply_overrides, merge, read_yaml
from mmreason.methods.fbae import METHOD, FbaeExperiment

TINY_YAML = Path(__file__).resolve().parents[2] / "mmreason" / "methods" / "fbae" / "configs" / "tiny_synthetic.yaml"


@pytest.mark.slow
def test_fbae_tiny_trainer_run_and_reload(tmp_path, one_torch_thread):
    from mmreason.engine import Trainer, load_checkpoint

    cfg = apply_overrides(merge(FbaeExperiment(), read_yaml(TINY_YAML)),
                          [f"train.output_dir={tmp_path / 'run'}", "train.max_steps=10"])
    model = METHOD.build_model(cfg)
    result = Trainer(model, cfg.train, METHOD.build_dataset(cfg, "train"), collate_fn=METHOD.collate_fn,
                     run_dir=cfg.train.output_dir, config=cfg).fit()
    assert result.global_step == 10 and all(torch.isfinite(torch.tensor(r["loss"])) for r in result.history)
    metrics = METHOD.evaluate(model, cfg, "test", None)
    reloaded = METHOD.build_model(cfg)
    load_checkpoint(reloaded, cfg.train.output_dir)
    again = METHOD.evaluate(reloaded, cfg, "test", None)
    assert again["auc_micro"] == pytest.approx(metrics["auc_micro"], abs=1e-6)  # BN statistics travel too
    assert 0.0 <= metrics["auc_micro"] <= 1.0 and "vaa_auc_2" in metrics
