"""End to end: the engine's Trainer on corm/tiny_synthetic, evaluation, checkpoint reload, config files."""
from pathlib import Path

import pytest

from mmreason.config import merge, read_yaml
from mmreason.methods.corm import METHOD, CORMExperiment

CONFIGS = Path(__file__).resolve().parents[2] / "mmreason" / "methods" / "corm" / "configs"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def load(name, **sections):
    cfg = merge(CORMExperiment(), read_yaml(CONFIGS / f"{name}.yaml"))
    return merge(cfg, sections) if sections else cfg


def test_every_config_file_loads_and_names_its_launch_command():
    names = sorted(p.stem for p in CONFIGS.glob("*.yaml"))
    expected = {f"{d}_{b}{c}" for d in ("multithumos", "tsu", "charades", "ucf_crime_tal") for b in ("pdan", "mstct")
                for c in ("", "_corm")} | {"tiny_synthetic"}
    assert set(names) == expected
    for name in names:
        assert (CONFIGS / f"{name}.yaml").read_text().startswith(f"# mmreason train --config corm/{name}")
        cfg = load(name)
        assert cfg.model.use_corm == (name.endswith("_corm") or name == "tiny_synthetic")
    assert load("tsu_pdan").data.num_classes == 51 and load("multithumos_mstct").data.num_classes == 65
    assert load("charades_mstct_corm").data.num_classes == 157 and load("charades_pdan").eval.sampled_25


@pytest.mark.slow
def test_trainer_end_to_end_on_tiny_synthetic(tmp_path):
    from mmreason.engine import Trainer, load_checkpoint

    cfg = load("tiny_synthetic", train={"output_dir": str(tmp_path / "run"), "epochs": 25})
    model = METHOD.build_model(cfg)
    untrained = METHOD.evaluate(model, cfg, "test", None)
    before = untrained["mAP"]
    result = Trainer(model, cfg.train, METHOD.build_dataset(cfg, "train"), collate_fn=METHOD.collate_fn,
                     evaluate=lambda m, acc: METHOD.evaluate(m, cfg, "val", acc), run_dir=cfg.train.output_dir,
                     config=cfg).fit()
    assert result.global_step == 50                           # 16 videos / batch 8 x 25 epochs
    losses = [r["loss"] for r in result.history]
    assert losses[-1] < losses[0]
    metrics = METHOD.evaluate(model, cfg, "test", None)
    print("tiny_synthetic mAP before/after", before, metrics["mAP"])
    assert metrics["mAP"] > before + 20
    print("conditional mAP@0/20/40 before/after", [(untrained[f"mAP_AC@{t}"], metrics[f"mAP_AC@{t}"])
                                                   for t in (0, 20, 40)])
    # training must also raise MLAD's conditional scores (at t = 0 a dependent class is scored where its anchor is)
    assert metrics["mAP_AC@0"] > untrained["mAP_AC@0"] + 15
    assert metrics["F1_AC@0"] > untrained["F1_AC@0"]
    assert result.eval_history[-1]["metrics"]["mAP"] == pytest.approx(
        METHOD.evaluate(model, cfg, "val", None)["mAP"])

    fresh = METHOD.build_model(cfg)
    load_checkpoint(fresh, cfg.train.output_dir)
    assert METHOD.evaluate(fresh, cfg, "test", None)["mAP"] == pytest.approx(metrics["mAP"], abs=1e-6)


def test_real_dataset_config_without_files_names_them(tmp_path):
    cfg = load("tsu_pdan", data={"annotation_file": str(tmp_path / "smarthome_CS_51.json"),
                                 "features_root": str(tmp_path), "class_list": ""})
    with pytest.raises(FileNotFoundError, match="smarthome_CS_51.json"):
        METHOD.build_dataset(cfg, "train")
