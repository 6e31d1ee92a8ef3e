"""Open-MeDe end to end on the tiny synthetic config: meta-optimised training, unseen classes, self-ensemble."""
import json

import pytest
import torch


def test_open_mede_refuses_clip_regularisation(tiny_experiment):
    method, cfg = tiny_experiment("open_mede", model={"distill_weight": 2.0})
    with pytest.raises(ValueError, match="no CLIP regularisation"):
        method.build_model(cfg)


@pytest.mark.slow
def test_open_mede_trains_and_recognises_unseen_classes(tmp_path, tiny_experiment):
    from mmreason.engine import Trainer, load_checkpoint
    from mmreason.engine.averaging import averaging_coefficients
    from mmreason.methods.open_mede import self_ensemble

    method, cfg = tiny_experiment("open_mede", train={"output_dir": str(tmp_path / "run")})
    torch.manual_seed(0)
    model = method.build_model(cfg)
    assert not hasattr(model, "raw_vision")  # no frozen CLIP teacher
    before = method.evaluate(model, cfg, "test")
    result = Trainer(model, cfg.train, method.build_dataset(cfg, "train"), collate_fn=method.collate_fn,
                     run_dir=tmp_path / "run", config=cfg).fit()
    assert {"loss_virtual_train", "loss_virtual_eval"} <= set(result.history[-1])
    after = method.evaluate(model, cfg, "test")
    chance = 100.0 / cfg.data.synthetic_unseen
    assert after["top1_mean"] >= 2.5 * chance and after["top1_mean"] > before["top1_mean"]

    averaged = self_ensemble(cfg, tmp_path / "run")  # Gaussian over epochs 0 (initial CLIP) .. 5
    record = json.loads((averaged / "averaging.json").read_text())
    assert record["sources"][0] == "<initial weights>" and len(record["sources"]) == cfg.train.epochs + 1
    assert record["coefficients"] == pytest.approx(averaging_coefficients(
        cfg.train.epochs + 1, "gaussian", mean=cfg.average.mean, std=cfg.average.std))
    fresh = method.build_model(cfg)
    load_checkpoint(fresh, averaged)
    assert method.evaluate(fresh, cfg, "test")["top1_mean"] > chance
