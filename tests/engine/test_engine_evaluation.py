"""Evaluation through the engine: the method gets an accelerator and a model on its device, without gradients,
in eval mode, batched; ``--output`` writes metrics, the checkpoint, per-class metrics and predictions."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from engine_toys import TeacherClassification, ToyClassifier, ToyExperiment
from mmreason.engine import Trainer, prepare_eval_loader
from mmreason.engine.config import TrainConfig
from mmreason.engine.evaluation import evaluate_model
from mmreason.methods.base import MethodSpec

TEST = TeacherClassification(n=37, seed=7, split=1)
CFG = ToyExperiment(train=TrainConfig(seed=0, batch_size=8, lr=0.05, max_steps=8, log_every=4, eval_every=-1,
                                      progress=False))


def _build(cfg):
    torch.manual_seed(0)
    return ToyClassifier(width=cfg.width)


def _predict(model, accelerator, seen):
    loader = prepare_eval_loader(TEST, 16, accelerator=accelerator)
    preds, labels = [], []
    for batch in loader:
        seen.append(len(batch["y"]))
        logits = model(batch["x"].to(accelerator.device))  # [B, C]
        pred, y = accelerator.gather_for_metrics((logits.argmax(1), batch["y"].to(accelerator.device)))
        preds.append(pred.cpu())
        labels.append(y.cpu())
    return torch.cat(preds).numpy(), torch.cat(labels).numpy()


def _method(with_report: bool, calls: list):
    def evaluate(model, cfg, split, accelerator, report=None):
        calls.append({"accelerator": accelerator, "device": next(model.parameters()).device,
                      "grad": torch.is_grad_enabled(), "training": model.training, "split": split, "batches": []})
        pred, y = _predict(model, accelerator, calls[-1]["batches"])
        if report is not None:
            report["per_class"] = {f"class {c}": {"accuracy": 100.0 * float((pred[y == c] == c).mean())}
                                   for c in np.unique(y)}
            report["predictions"] = {"pred": pred, "label": y}
        return {"accuracy": 100.0 * float((pred == y).mean())}

    def plain(model, cfg, split, accelerator):  # no `report` keyword: headline metrics only
        return evaluate(model, cfg, split, accelerator)

    return MethodSpec(name="toy", config_cls=ToyExperiment, build_model=_build, build_dataset=lambda cfg, s: TEST,
                      evaluate=evaluate if with_report else plain)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    run = tmp_path_factory.mktemp("eval") / "run"
    Trainer(_build(CFG), CFG.train, TeacherClassification(n=64, seed=7), run_dir=run, config=CFG).fit()
    return run


def test_evaluation_runs_batched_on_the_accelerator_and_writes_per_class_results(run_dir, tmp_path):
    calls = []
    out = tmp_path / "results" / "toy.json"
    metrics = evaluate_model(_method(True, calls), CFG, checkpoint=run_dir, split="test", output=out)
    call = calls[0]
    assert call["accelerator"] is not None and call["device"] == call["accelerator"].device
    assert call["grad"] is False and call["training"] is False and call["split"] == "test"
    assert call["batches"] == [16, 16, 5]  # batched, every sample once

    # the same numbers by hand from the trained weights
    from mmreason.engine import load_checkpoint

    model = _build(CFG)
    load_checkpoint(model, run_dir)
    with torch.no_grad():
        pred = model(TEST.x).argmax(1).numpy()
    y = TEST.y.numpy()
    assert metrics == {"accuracy": pytest.approx(100.0 * (pred == y).mean())}

    record = json.loads(out.read_text())
    assert record["checkpoint"] == str(run_dir / "checkpoints" / "step_0000008") and record["step"] == 8
    assert record["metrics"] == metrics and record["split"] == "test" and record["method"] == "toy"
    for c in np.unique(y):
        assert record["per_class"][f"class {c}"]["accuracy"] == pytest.approx(100.0 * (pred[y == c] == c).mean())
    assert record["predictions"] == {"pred": {"npz": "predictions/pred"}, "label": {"npz": "predictions/label"}}
    arrays = np.load(tmp_path / "results" / record["arrays_file"])
    np.testing.assert_array_equal(arrays["predictions/pred"], pred)
    np.testing.assert_array_equal(arrays["predictions/label"], y)


def test_methods_without_the_report_hook_give_headline_metrics_and_say_so(run_dir, tmp_path):
    out = tmp_path / "toy.json"
    metrics = evaluate_model(_method(False, []), CFG, checkpoint=run_dir, output=out)
    record = json.loads(out.read_text())
    assert record["metrics"] == metrics and "per_class" not in record
    assert "headline metrics only" in record["note"]


def test_evaluation_without_a_checkpoint_warns(caplog, tmp_path):
    import logging

    with caplog.at_level(logging.WARNING, logger="mmreason"):
        evaluate_model(_method(False, []), CFG, output=None)
    assert "no checkpoint given: evaluating the untrained toy model" in caplog.text
