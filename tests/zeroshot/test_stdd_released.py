"""STDD against the released code and files: templates, class <-> graph pairing, released split-file names and
formats, early failure on missing graph classes, and released-checkpoint conversion (round trip)."""
import json
from pathlib import Path

import pytest
import torch

from mmreason.methods.stdd.model import match_graph_records

REFERENCE = Path(__file__).resolve().parents[3] / "shared" / "reference" / "stdd_label_db"
needs_reference = pytest.mark.skipif(not REFERENCE.is_dir(), reason="../shared/reference is not present")


@needs_reference
def test_released_templates_are_the_defaults():
    from mmreason.api import load_experiment
    from mmreason.assets.importers import read_stdd_label_file
    from mmreason.methods.open_mede.config import OpenMeDeConfig

    hmdb = read_stdd_label_file(REFERENCE / "classes_label_hmdb51.yml")["templates"]
    assert OpenMeDeConfig().templates == hmdb and OpenMeDeConfig().num_templates == len(hmdb) == 28
    stdd_hmdb = load_experiment("stdd/hmdb51_zs")[1].model
    assert stdd_hmdb.test_templates == hmdb[:stdd_hmdb.num_templates]  # the released HMDB51 features' templates
    assert load_experiment("stdd/b2n_hmdb51")[1].model.templates == hmdb[:8]


@needs_reference
def test_released_hmdb51_files_pair_classes_by_position_like_text2feature():
    """The released HMDB51 class list says "fall floor", its graph "falling to the floor": text2feature pairs
    the i-th class with the i-th entry, and so do we when the file is one entry per class in class order."""
    from mmreason.assets.importers import read_stdd_askg, read_stdd_label_file

    classes = read_stdd_label_file(REFERENCE / "classes_label_hmdb51.yml")["classes"]
    records = read_stdd_askg(REFERENCE / "classes_ASKG_hmdb51.yml", REFERENCE / "classes_xprompt_hmdb51.yml")
    matched = match_graph_records(classes, records, "hmdb51")
    fall = classes.index("fall floor")
    assert matched[fall]["class"] == "fall floor" and records[fall]["class"] == "falling to the floor"
    assert matched[fall]["xprompt_oo"] == records[fall]["xprompt_oo"]
    # a subset (e.g. the base-to-novel novel classes) cannot be paired by position: one error names the class
    subset = [c for c in classes if c in ("fall floor", "fencing", "golf")]
    with pytest.raises(ValueError, match=r"hmdb51: the action-graph asset lacks 1 of the 3 classes: 'fall floor'"):
        match_graph_records(subset, records, "hmdb51")
    # names match across spellings (UCF101 folders, released corpus keys)
    assert match_graph_records(["Apply Eye Makeup"], [{"class": "apply eye makeup", "xprompt_oo": ["x"]}],
                               "ucf")[0]["xprompt_oo"] == ["x"]


ASKG = """\
{name}:
  label: {name}
  obj_en_li: [thing]
  obj_rel_triples: []
  act_obj_triples: []
  sub_act_en_li: [start]
  act_rel_triples: []
"""
XPROMPT = """\
{name}:
  label: {name}
  xprompt_oo: [where a thing is used]
  xprompt_ao: []
  xprompt_aa: []
"""


def test_training_fails_at_build_naming_test_classes_the_graph_lacks(tmp_path, tiny_experiment):
    (tmp_path / "train.csv").write_text("a.mp4,0\nb.mp4,1\n")
    (tmp_path / "train_classes.json").write_text(json.dumps({"0": "abseiling", "1": "archery"}))
    (tmp_path / "test.csv").write_text("c.mp4,0\n")
    (tmp_path / "test_idx2cls.csv").write_text("0,juggling balls\n1,abseiling\n2,yo yo\n")
    for name, classes in (("train", ["abseiling", "archery"]), ("test", ["abseiling"])):
        (tmp_path / f"{name}_askg.yml").write_text("".join(ASKG.format(name=c) for c in classes))
        (tmp_path / f"{name}_xprompt.yml").write_text("".join(XPROMPT.format(name=c) for c in classes))
    data = {"dataset": "split_files", "train_list": str(tmp_path / "train.csv"),
            "train_classes": str(tmp_path / "train_classes.json"), "test_lists": [str(tmp_path / "test.csv")],
            "test_classes": [str(tmp_path / "test_idx2cls.csv")]}
    model = {"askg_file": str(tmp_path / "train_askg.yml"), "xprompt_file": str(tmp_path / "train_xprompt.yml"),
             "test_askg_file": str(tmp_path / "test_askg.yml"), "test_xprompt_file": str(tmp_path / "test_xprompt.yml")}
    method, cfg = tiny_experiment("stdd", data=data, model=model)
    with pytest.raises(ValueError, match=r"lacks 2 of the 3 classes: 'juggling balls', 'yo yo'") as err:
        method.build_model(cfg)  # before any video is read or any step is taken
    assert "test_idx2cls.csv" in str(err.value) and "test_askg.yml" in str(err.value)


def _write_released_b2n_hmdb(root: Path) -> None:
    """A miniature of the released zs_label_db/B2N_hmdb folder: released file names and formats."""
    folder = root / "data" / "STDD" / "zs_label_db" / "B2N_hmdb"
    folder.mkdir(parents=True)
    (folder / "raw_train_idx2cls.json").write_text(json.dumps({"0": "pour", "1": "pullup"}))
    (folder / "raw_test_idx2cls.json").write_text(json.dumps({"0": "brush hair", "1": "cartwheel", "2": "catch"}))
    (folder / "train.csv").write_text("pour/a.avi,0\npullup/b.avi,1\n")
    (folder / "val.csv").write_text("pour/c.avi,0\n")
    (folder / "test.csv").write_text("brush_hair/d.avi,0\ncatch/e.avi,2\n")


@pytest.mark.parametrize("method_name", ["stdd", "open_mede"])
def test_shipped_b2n_config_reads_the_released_files(tmp_path, monkeypatch, method_name):
    from mmreason.api import load_experiment
    from mmreason.data.zeroshot import load_splits

    _write_released_b2n_hmdb(tmp_path)
    monkeypatch.chdir(tmp_path)  # the shipped config's paths are relative: data/STDD/zs_label_db/...
    cfg = load_experiment(f"{method_name}/b2n_hmdb51")[1]
    (train,) = load_splits(cfg.data, "train")
    assert train.class_names == ["pour", "pullup"] and train.videos[1] == ("data/videos/hmdb51/pullup/b.avi", 1)
    base, novel = load_splits(cfg.data, "test")
    assert (base.name, base.class_names) == ("base", ["pour", "pullup"])
    assert (novel.name, novel.class_names[2], novel.videos[1][1]) == ("novel", "catch", 2)


def test_shipped_configs_name_the_released_class_files():
    from mmreason.api import load_experiment

    released = {"k400-index2cls.json", "ucf101-index2cls.json", "hmdb-index2cls.json",
                "k600-openset-index2cls.json", "raw_train_idx2cls.json", "raw_test_idx2cls.json"}
    for method in ("stdd", "open_mede"):
        for name in ("k400_zs", "ucf101_zs", "hmdb51_zs", "k600_zs", "b2n_k400", "b2n_ucf101", "b2n_hmdb51",
                     "b2n_ssv2"):
            data = load_experiment(f"{method}/{name}")[1].data
            files = [data.train_classes, *data.test_classes]
            assert {Path(f).name for f in files} <= released, (method, name, files)


# ------------------------------------------------------------------------------------------------ checkpoints

def _random_weights(model, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05 + p)


@pytest.mark.parametrize("temporal_modeling", ["stcross", "none"])
def test_released_checkpoint_round_trip(temporal_modeling, tiny_experiment):
    from mmreason.methods.stdd.released import convert_released, to_released

    method, cfg = tiny_experiment("stdd", model={"temporal_modeling": temporal_modeling})
    model = method.build_model(cfg).eval()
    _random_weights(model, 0)  # every tensor (tower, text, teacher, projector, scale) differs from a fresh build
    released = to_released(model)
    assert {"model.visual.transformer.resblocks.1.attn.in_proj_weight", "model.visual.proj", "model.logit_scale",
            "model.transformer.resblocks.0.mlp.c_fc.weight", "model.text_projection",
            "raw_model.visual.conv1.weight", "projector_v.0.weight", "projector_v.2.weight"} <= set(released)
    file_content = {"model_state": {f"module.{k}": v for k, v in released.items()}, "epoch": 3}
    fresh = method.build_model(cfg).eval()
    fresh.load_state_dict(convert_released(file_content, cfg), strict=True)
    frames = torch.randn(3, cfg.data.num_frames, 3, cfg.data.image_size, cfg.data.image_size)
    torch.testing.assert_close(fresh(frames), model(frames), rtol=0, atol=0)
    batch = {"frames": frames, "labels": torch.tensor([0, 1, 2])}
    assert fresh.loss(batch)["distill"].item() == model.loss(batch)["distill"].item()


def test_averaged_released_checkpoint_and_unknown_keys(tiny_experiment):
    """weight_average_tool.py writes only the model.* keys: the projector is filled with its initial value
    (the released code never trains it); keys without a rule are passed through for the key check to name."""
    from mmreason.methods.stdd.released import convert_released, to_released

    method, cfg = tiny_experiment("stdd")
    model = method.build_model(cfg).eval()
    _random_weights(model, 1)
    averaged = {k: v for k, v in to_released(model).items() if k.startswith("model.")}
    converted = convert_released({"model_state": averaged}, cfg)
    fresh = method.build_model(cfg).eval()
    assert {k for k in fresh.state_dict() if not k.startswith("raw_vision.")} == set(converted)
    torch.testing.assert_close(converted["projector.fc1.weight"], fresh.projector.fc1.weight)
    fresh.load_state_dict(converted, strict=False)
    frames = torch.randn(2, cfg.data.num_frames, 3, cfg.data.image_size, cfg.data.image_size)
    torch.testing.assert_close(fresh(frames), model(frames), rtol=0, atol=0)
    odd = convert_released({**averaged, "model.visual.temporal_adapter.weight": torch.zeros(1)}, cfg)
    with pytest.raises(RuntimeError, match="temporal_adapter"):
        fresh.load_state_dict(odd, strict=True)


def test_released_checkpoint_file_converts_to_a_run_folder(tmp_path, tiny_experiment):
    """The whole path: a released-layout checkpoint file -> ``convert_released_checkpoint`` (the generic
    converter, which calls ``METHOD.convert_released``) -> run folder -> ``load_checkpoint``: same logits."""
    from mmreason.engine import load_checkpoint
    from mmreason.engine.convert import convert_released_checkpoint
    from mmreason.methods.stdd.released import to_released

    method, cfg = tiny_experiment("stdd")
    model = method.build_model(cfg).eval()
    _random_weights(model, 2)  # trained tower and scale; the frozen towers differ from the config's too
    path = tmp_path / "checkpoint_epoch_00022.pyth"
    torch.save({"model_state": {f"module.{k}": v for k, v in to_released(model).items()}, "epoch": 22}, path)
    info = convert_released_checkpoint(method, cfg, path, tmp_path / "run")
    assert info["frozen_differing"] > 0  # the frozen text tower / teacher of the file are stored and loaded
    fresh = method.build_model(cfg).eval()
    load_checkpoint(fresh, tmp_path / "run")
    frames = torch.randn(2, cfg.data.num_frames, 3, cfg.data.image_size, cfg.data.image_size)
    torch.testing.assert_close(fresh(frames), model(frames), rtol=0, atol=0)
