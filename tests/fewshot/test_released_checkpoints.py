"""Official Task-Adapter++ checkpoints: the released layout round-trips through `mmreason convert` into a run folder
that build_model and `mmreason eval` load with identical logits; bad files fail with one error listing the names."""
from __future__ import annotations

import json

import pytest
import torch

import mmreason
from mmreason.cli.main import main
from mmreason.engine import CheckpointError, list_checkpoints
from mmreason.engine.convert import strip_module
from mmreason.methods.task_adapter_pp.released import to_released

# 2 visual and 2 text blocks, only the last of each adapted (so block 0's released adapters are unused); the
# SSv2-Full transition LayerNorm on, so every part of the released layout is present
OVERRIDES = ["model.adapter_layers=1", "model.text_adapter_layers=1", "model.transition_norm=true",
             "data.test_episodes=6"]


def released_keys(vision_layers: int, text_layers: int, transition_norm: bool) -> set[str]:
    """The names of the released TaskAdapter.state_dict() (models.py / module_adapter.py / module_sem_adapter.py),
    written out from the released module definitions."""
    linear = [f"{n}.{p}" for n in ("D_fc1", "D_fc2") for p in ("weight", "bias")]
    clip_block = ["attn.in_proj_weight", "attn.in_proj_bias", "attn.out_proj.weight", "attn.out_proj.bias",
                  "ln_1.weight", "ln_1.bias", "mlp.c_fc.weight", "mlp.c_fc.bias", "mlp.c_proj.weight",
                  "mlp.c_proj.bias", "ln_2.weight", "ln_2.bias"]
    keys = {f"feature.module.{k}" for k in ("conv1.weight", "class_embedding", "positional_embedding",
                                            "temporal_embedding", "ln_pre.weight", "ln_pre.bias", "ln_post.weight",
                                            "ln_post.bias", "proj")}
    for i in range(vision_layers):
        keys |= {f"feature.module.transformer.resblocks.{i}.{k}" for k in clip_block}
        keys |= {f"feature.module.transformer.resblocks.{i}.{a}.{k}" for a in
                 ("t_adapter", "task_adapter", "s_adapter", "MLP_adapter") for k in linear}
    keys |= {f"text.{k}" for k in ("token_embedding.weight", "positional_embedding", "ln_final.weight",
                                   "ln_final.bias", "text_projection", "logit_scale")}
    for i in range(text_layers):
        keys |= {f"text.transformer.resblocks.{i}.{k}" for k in clip_block}
        keys |= {f"text.transformer.resblocks.{i}.sub3_adapter.{k}" for k in linear}
    if transition_norm:
        keys |= {"ca.ln_1.weight", "ca.ln_1.bias"}
    return keys


@pytest.fixture(scope="module")
def trained():
    """A tiny Task-Adapter++ whose trainable weights are random (as after training) and its released file."""
    torch.manual_seed(0)
    model = mmreason.build_model("task_adapter_pp/tiny_synthetic", OVERRIDES)
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=g) * 0.1)
    return model.eval()


def save_released(state: dict, path) -> str:
    torch.save({"epoch": 9, "state": state}, path)  # what run.py writes
    return str(path)


def test_released_layout_round_trips_into_a_run_folder(trained, tmp_path, capsys):
    state = to_released(trained)
    assert set(state) == released_keys(2, 2, transition_norm=True)
    assert float(state["feature.module.transformer.resblocks.0.t_adapter.D_fc1.weight"].abs().sum()) == 0  # unused
    released = save_released(state, tmp_path / "75.42.tar")
    run = tmp_path / "run"
    assert main(["convert", "--released", released, "--config", "task_adapter_pp/tiny_synthetic", "--output", str(run),
                 *OVERRIDES]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["frozen_differing"] == 0 and info["frozen_stored"] == 0  # same CLIP as the config builds
    assert len(list_checkpoints(run)) == 1

    reloaded = mmreason.build_model(checkpoint=run).eval()
    episode = mmreason.load_experiment(run)[0].build_dataset(mmreason.load_experiment(run)[1], "test")[2]
    with torch.no_grad():
        torch.testing.assert_close(reloaded(episode), trained(episode), rtol=0, atol=0)
    assert main(["eval", "--checkpoint", str(run)]) == 0  # the run folder is what `mmreason eval` reads
    evaluated = json.loads(capsys.readouterr().out)
    method, cfg = mmreason.load_experiment(run)
    assert evaluated["accuracy"] == method.evaluate(trained, cfg, "test", None)["accuracy"]


def test_frozen_weights_that_differ_from_the_config_are_stored(trained, tmp_path):
    state = to_released(trained)
    state["feature.module.conv1.weight"] = state["feature.module.conv1.weight"] * 1.5  # other CLIP weights
    state = {k: (v.half() if k.startswith("text.transformer") and "adapter" not in k else v)  # released text: fp16
             for k, v in state.items()}
    info = mmreason.convert_checkpoint(save_released(state, tmp_path / "r.tar"), "task_adapter_pp/tiny_synthetic",
                                       tmp_path / "run", OVERRIDES)
    assert info["frozen_differing"] >= 1 and info["frozen_stored"] > info["frozen_differing"]
    reloaded = mmreason.build_model(checkpoint=tmp_path / "run")
    torch.testing.assert_close(reloaded.visual.tower.conv1.weight, state["feature.module.conv1.weight"])
    block = reloaded.text.tower.blocks[0].mlp.c_fc.weight
    torch.testing.assert_close(block, state["text.transformer.resblocks.0.mlp.c_fc.weight"].float())


def test_unknown_and_missing_names_fail_together_and_write_nothing(trained, tmp_path):
    state = to_released(trained)
    del state["text.transformer.resblocks.1.sub3_adapter.D_fc2.weight"]
    state["feature.module.extra_head.weight"] = torch.zeros(3)
    released = save_released(state, tmp_path / "bad.tar")
    with pytest.raises(CheckpointError) as err:
        mmreason.convert_checkpoint(released, "task_adapter_pp/tiny_synthetic", tmp_path / "run", OVERRIDES)
    msg = str(err.value)
    assert "bad.tar" in msg and "unknown 1 [feature.extra_head.weight (as visual.tower.extra_head.weight)]" in msg
    assert "missing 1 [text.order_adapters.1.fc2.weight]" in msg
    assert not list_checkpoints(tmp_path / "run")
    # a released SSv2-Full file (with the transition LayerNorm) into a config without it: named, not dropped
    with pytest.raises(CheckpointError, match=r"unknown 2 \[ca.ln_1.bias \(as transition_ln.bias\), ca.ln_1.weight"):
        mmreason.convert_checkpoint(save_released(to_released(trained), tmp_path / "ssv2.tar"),
                                    "task_adapter_pp/tiny_synthetic", tmp_path / "run2",
                                    [o for o in OVERRIDES if "transition_norm" not in o])


def test_bad_files_fail_before_the_model_is_built(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.tar"):
        mmreason.convert_checkpoint(tmp_path / "nothere.tar", "task_adapter_pp/tiny_synthetic", tmp_path / "run")
    torch.save({"epoch": 3, "optimizer": {"lr": 0.1}}, tmp_path / "no_state.tar")
    with pytest.raises(CheckpointError, match="'state' / 'model_state' / 'state_dict'; found \\['epoch', 'optimizer'\\]"):
        mmreason.convert_checkpoint(tmp_path / "no_state.tar", "task_adapter_pp/tiny_synthetic", tmp_path / "run")
    (tmp_path / "junk.tar").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.tar: cannot be read as a torch checkpoint"):
        mmreason.convert_checkpoint(tmp_path / "junk.tar", "task_adapter_pp/tiny_synthetic", tmp_path / "run")
    assert main(["convert", "--released", str(tmp_path / "junk.tar"), "--config", "task_adapter_pp/tiny_synthetic",
                 "--output", str(tmp_path / "run")]) == 2  # one line on stderr, no traceback


def test_task_adapter_takes_the_visual_branch(tmp_path):
    torch.manual_seed(0)
    model = mmreason.build_model("task_adapter/tiny_synthetic", ["model.adapter_layers=1"])
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.1)
    state = to_released(model)
    assert {k for k in state if not k.startswith("feature.module.")} == set()
    mmreason.convert_checkpoint(save_released(state, tmp_path / "ta.tar"), "task_adapter/tiny_synthetic",
                                tmp_path / "run", ["model.adapter_layers=1"])
    reloaded = mmreason.build_model(checkpoint=tmp_path / "run").eval()
    method, cfg = mmreason.load_experiment(tmp_path / "run")
    episode = method.build_dataset(cfg, "test")[0]
    with torch.no_grad():
        torch.testing.assert_close(reloaded(episode), model.eval()(episode), rtol=0, atol=0)


def test_module_components_are_stripped_anywhere():
    assert strip_module("feature.module.conv1.weight") == "feature.conv1.weight"
    assert strip_module("module.model.head.weight") == "model.head.weight"
