"""Config system: defaults, YAML overrides, dotted CLI overrides, type checks, did-you-mean, save/load round trip."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Optional

import pytest

from mmreason.config import (ConfigError, apply_overrides, describe, fingerprint, from_dict, load_config, option,
                             parse_dotted, read_yaml, save_config, to_dict)


@dataclass
class ModelCfg:
    depth: int = option(2, help="number of blocks")
    width: int = option(64, help="channels")
    dropout: float = option(0.1, help="dropout probability")
    act: str = option("gelu", help="activation", choices=("gelu", "relu"))
    dilations: tuple[int, ...] = option((1, 2, 4), help="dilation per layer")


@dataclass
class ExpCfg:
    model: ModelCfg = option(default_factory=ModelCfg, help="the network")
    lr: float = option(1e-3, help="learning rate")
    use_corm: bool = option(True, help="add the relation module")
    names: list[str] = option(default_factory=list, help="class names")
    label_file: Optional[str] = option(None, help="optional path")


def test_dotted_overrides_are_typed():
    cfg = apply_overrides(ExpCfg(), ["model.depth=4", "lr=1e-2", "use_corm=false", "model.dilations=[1,3]",
                                     "names=[a, b]", "label_file=x.npy", "model.dropout=0"])
    assert cfg.model.depth == 4 and isinstance(cfg.model.depth, int)
    assert cfg.lr == pytest.approx(0.01)
    assert cfg.use_corm is False
    assert cfg.model.dilations == (1, 3)
    assert cfg.names == ["a", "b"]
    assert cfg.label_file == "x.npy"
    assert cfg.model.dropout == 0.0 and isinstance(cfg.model.dropout, float)
    # the original is untouched
    assert ExpCfg().model.depth == 2


def test_wrong_types_fail_with_the_key_named():
    with pytest.raises(ConfigError, match="model.depth: expected an integer"):
        apply_overrides(ExpCfg(), ["model.depth=deep"])
    with pytest.raises(ConfigError, match="use_corm: expected true/false"):
        apply_overrides(ExpCfg(), ["use_corm=maybe"])
    with pytest.raises(ConfigError, match="model.act: 'gleu' is not one of"):
        apply_overrides(ExpCfg(), ["model.act=gleu"])
    with pytest.raises(ConfigError, match="did you mean 'gelu'"):
        apply_overrides(ExpCfg(), ["model.act=gleu"])


def test_unknown_keys_suggest_the_close_one():
    with pytest.raises(ConfigError, match=r"unknown config key 'model.dept'; did you mean 'depth'\?"):
        apply_overrides(ExpCfg(), ["model.dept=3"])
    with pytest.raises(ConfigError, match="unknown config key 'lrr'"):
        apply_overrides(ExpCfg(), {"lrr": 1})
    with pytest.raises(ConfigError, match="must look like key.sub=value"):
        parse_dotted(["model.depth"])


def test_yaml_holds_only_overrides(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("model:\n  depth: 6\nlr: 3.0e-4\n")
    cfg = apply_overrides(ExpCfg(), read_yaml(path))
    assert cfg.model.depth == 6 and cfg.model.width == 64 and cfg.lr == pytest.approx(3e-4)
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        read_yaml(bad)
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        read_yaml(tmp_path / "missing.yaml")
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        read_yaml(listy)


def test_save_and_load_round_trip_with_type_tag_and_fingerprint(tmp_path):
    cfg = apply_overrides(ExpCfg(), ["model.depth=5", "names=[x]"])
    path = save_config(cfg, tmp_path / "config.json")
    record = json.loads(path.read_text())
    assert record["type"].endswith(":ExpCfg")
    assert record["fingerprint"] == fingerprint(cfg)
    loaded = load_config(path)
    assert loaded == cfg
    assert fingerprint(loaded) == fingerprint(cfg)
    assert fingerprint(apply_overrides(cfg, ["lr=0.5"])) != fingerprint(cfg)
    assert to_dict(loaded)["model"]["dilations"] == [1, 2, 4]


def test_from_dict_and_describe():
    cfg = from_dict(ExpCfg, {"model": {"width": 32}})
    assert cfg.model.width == 32 and cfg.model.depth == 2
    rows = {name: (value, help_text) for name, _, value, help_text in describe(cfg)}
    assert rows["model.width"] == (32, "channels")
    assert rows["lr"][1] == "learning rate"


def test_every_field_needs_help():
    with pytest.raises(ValueError, match="help text"):
        option(1, help="")
