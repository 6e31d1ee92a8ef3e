"""VS-TransGRU end to end: the engine's Trainer on the tiny synthetic config, then reload and evaluate."""
from pathlib import Path

import pytest
import torch

from mmreason.config import apply_overrides, merge, read_yaml
from mmreason.methods.vs_transgru import METHOD, VSTransGRUExperiment

CONFIG = Path(__file__).resolve().parents[2] / "mmreason" / "methods" / "vs_transgru" / "configs" / "tiny_synthetic.yaml"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_tiny_synthetic_trains_with_engine_and_reloads(tmp_path):
    from mmreason.engine import Trainer, load_checkpoint

    cfg = apply_overrides(merge(VSTransGRUExperiment(), read_yaml(CONFIG)), [f"train.output_dir={tmp_path}"])
    torch.manual_seed(0)
    model = METHOD.build_model(cfg)
    trainer = Trainer(model, cfg.train, METHOD.build_dataset(cfg, "train"), collate_fn=METHOD.collate_fn,
                      evaluate=lambda m, acc: METHOD.evaluate(m, cfg, "val", acc), run_dir=tmp_path, config=cfg)
    result = trainer.fit()
    assert result.global_step == cfg.train.epochs * (cfg.data.num_samples // cfg.train.batch_size)
    anticipation_ce = [h["ce"] for h in result.history]                # fused cross-entropy, logged every 20 steps
    assert anticipation_ce[-1] < 0.25 * anticipation_ce[0], anticipation_ce
    final = result.eval_history[-1]["metrics"]
    assert final["action_top1@1.0s"] > 80.0                           # chance: 8.3 %

    checkpoints = sorted((tmp_path / "checkpoints").glob("step_*"))
    assert checkpoints, f"no checkpoint under {tmp_path / 'checkpoints'}"
    torch.manual_seed(123)                                            # a different init, overwritten by the load
    fresh = METHOD.build_model(cfg)
    load_checkpoint(fresh, checkpoints[-1])
    reloaded = METHOD.evaluate(fresh, cfg, "test", None)
    original = METHOD.evaluate(model, cfg, "test", None)
    assert reloaded["action_top1@1.0s"] == pytest.approx(original["action_top1@1.0s"])
    assert reloaded["action_top1@1.0s"] > 80.0
