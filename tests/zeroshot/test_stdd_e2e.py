"""STDD end to end on the tiny synthetic config: Trainer, unseen-class accuracy, weight averaging, reload."""
import pytest
import torch


@pytest.mark.slow
def test_stdd_trains_and_recognises_unseen_classes(tmp_path, tiny_experiment):
    from mmreason.config import merge
    from mmreason.engine import Trainer, list_checkpoints, load_checkpoint
    from mmreason.methods.stdd import average_run

    method, cfg = tiny_experiment("stdd", train={"output_dir": str(tmp_path / "run")})
    torch.manual_seed(0)
    model = method.build_model(cfg)
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 1 + \
        sum(p.numel() for p in model.vision.parameters()) + sum(p.numel() for p in model.projector.parameters())
    before = method.evaluate(model, cfg, "test")
    result = Trainer(model, cfg.train, method.build_dataset(cfg, "train"), collate_fn=method.collate_fn,
                     evaluate=lambda m, acc: method.evaluate(m, cfg, "val", acc), run_dir=tmp_path / "run",
                     config=cfg).fit()
    assert len(result.eval_history) == cfg.train.epochs and "top1_mean" in result.eval_history[-1]["metrics"]
    losses = [h["loss"] for h in result.history]
    assert losses[-1] < losses[0] and {"ce", "distill"} <= set(result.history[-1])
    after = method.evaluate(model, cfg, "test")
    chance = 100.0 / cfg.data.synthetic_unseen
    assert after["top1_mean"] >= 2.5 * chance
    assert after["top1_mean"] > before["top1_mean"]

    b2n = merge(cfg, {"data": {"protocol": "base_to_novel"}})
    scores = method.evaluate(model, b2n, "test")
    assert set(scores) >= {"top1_base", "top1_novel", "hm"} and scores["top1_base"] > 100.0 / 18

    assert len(list_checkpoints(tmp_path / "run")) == cfg.train.epochs
    averaged = average_run(cfg, tmp_path / "run")
    fresh = method.build_model(cfg)
    load_checkpoint(fresh, averaged)
    assert method.evaluate(fresh, cfg, "test")["top1_mean"] > chance
