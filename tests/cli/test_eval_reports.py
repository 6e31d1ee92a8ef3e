"""`mmreason eval --output` per-class results agree with each method's headline metrics (VS-TransGRU, STDD; CORM
is checked in test_cli_workflows.py)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from mmreason.cli.main import main


def _train_and_report(capsys, tmp_path, config: str) -> dict:
    run_dir = tmp_path / "run"
    assert main(["train", "--config", config, f"train.output_dir={run_dir}", "train.max_steps=2",
                 "train.eval_every=-1"]) == 0
    capsys.readouterr()
    out = tmp_path / "report.json"
    assert main(["eval", "--checkpoint", str(run_dir), "--output", str(out)]) == 0
    metrics = json.loads(capsys.readouterr().out)
    record = json.loads(out.read_text())
    assert record["metrics"] == metrics
    return record


def test_vs_transgru_per_action_recall_averages_to_the_mean_top5_recall(capsys, tmp_path):
    record = _train_and_report(capsys, tmp_path, "vs_transgru/tiny_synthetic")
    for t in record["predictions"]["times_s"]:
        recalls = [row[f"top5_recall@{t}s"] for row in record["per_class"].values() if f"top5_recall@{t}s" in row]
        assert np.mean(recalls) == pytest.approx(record["metrics"][f"action_mt5r@{t}s"])  # all classes count here
    arrays = np.load(tmp_path / record["arrays_file"])
    top5, target = arrays["predictions/top5_actions"], arrays["predictions/target_actions"]
    assert top5.shape == target.shape + (5,)
    t1 = record["predictions"]["times_s"].index(1.0)
    assert 100.0 * (top5[:, t1] == target[:, t1, None]).any(1).mean() == pytest.approx(
        record["metrics"]["action_top5@1.0s"])


def test_stdd_per_class_top1_weights_up_to_the_split_accuracy(capsys, tmp_path):
    record = _train_and_report(capsys, tmp_path, "stdd/tiny_synthetic")
    rows = record["per_class"]
    splits = {name.split("/", 1)[0] for name in rows}
    for split in splits:
        mine = [r for name, r in rows.items() if name.startswith(split + "/")]
        total = sum(r["samples"] for r in mine)
        assert sum(r["top1"] * r["samples"] for r in mine) / total == pytest.approx(
            record["metrics"][f"top1_{split}"], abs=1e-4)
        predictions = [p for p in record["predictions"] if p["split"] == split]
        assert len(predictions) == total
        assert 100.0 * np.mean([p["top5"][0] == p["label"] for p in predictions]) == pytest.approx(
            record["metrics"][f"top1_{split}"], abs=1e-4)


def test_task_adapter_per_class_accuracy_weights_up_to_the_episode_accuracy(capsys, tmp_path):
    record = _train_and_report(capsys, tmp_path, "task_adapter/tiny_synthetic")
    episodes = record["predictions"]
    assert len(episodes) == record["metrics"]["episodes"]
    per_episode = [100.0 * np.mean([l == p for l, p in zip(e["labels"], e["predicted"])]) for e in episodes]
    assert np.mean(per_episode) == pytest.approx(record["metrics"]["accuracy"], abs=1e-4)
    rows = record["per_class"]   # every query counted once, under its own class's name
    assert sum(r["queries"] for r in rows.values()) == sum(len(e["labels"]) for e in episodes)
    assert sum(r["accuracy"] * r["queries"] for r in rows.values()) / sum(r["queries"] for r in rows.values()) == \
        pytest.approx(np.mean([l == p for e in episodes for l, p in zip(e["labels"], e["predicted"])]) * 100.0)


@pytest.mark.parametrize("config", ["adsm/tiny_synthetic", "fbae/tiny_synthetic", "cbcg/tiny_synthetic"])
def test_anomaly_per_video_scores_reproduce_the_micro_and_macro_auc(capsys, tmp_path, config):
    from mmreason.experiment import load_experiment
    from mmreason.metrics.anomaly import frame_auc_macro, frame_auc_micro

    record = _train_and_report(capsys, tmp_path, config)
    arrays = np.load(tmp_path / record["arrays_file"])
    videos = record["predictions"]
    scores = [arrays[v["frame_scores"]["npz"]] for v in videos]
    method, cfg = load_experiment(tmp_path / "run")
    labels = [getattr(v, "labels", getattr(v, "frame_labels", None)) for v in method.build_dataset(cfg, "test").videos]
    assert [len(s) for s in scores] == [len(y) for y in labels]
    micro = record["metrics"].get("auc_micro", record["metrics"].get("auc"))   # CBCG: UCF-Crime's frame AUC
    assert frame_auc_micro(scores, labels) == pytest.approx(micro)
    assert np.mean([v["auc_pad_all"] for v in videos]) == pytest.approx(frame_auc_macro(scores, labels, "pad_all"))
    if "auc_macro_pad_all" in record["metrics"]:
        assert frame_auc_macro(scores, labels, "pad_all") == pytest.approx(record["metrics"]["auc_macro_pad_all"])
