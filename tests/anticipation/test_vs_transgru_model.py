"""VS-TransGRU: learns a synthetic sequence rule, its variants run, label embeddings, the RULSTM data path."""
from pathlib import Path

import numpy as np
import pytest
import torch

from mmreason.config import apply_overrides, merge, read_yaml
from mmreason.data.anticipation import rulstm_frame_key, rulstm_past_frames
from mmreason.methods.vs_transgru import (METHOD, VSTransGRUExperiment, build_dataset, build_model, collate,
                                          evaluate, label_embeddings, predict_scores)

CONFIGS = Path(__file__).resolve().parents[2] / "mmreason" / "methods" / "vs_transgru" / "configs"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_cfg(*overrides: str) -> VSTransGRUExperiment:
    cfg = merge(VSTransGRUExperiment(), read_yaml(CONFIGS / "tiny_synthetic.yaml"))
    return apply_overrides(cfg, list(overrides))


def train_plain(cfg, epochs: int, lr: float = 3e-3) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model(cfg)
    loader = torch.utils.data.DataLoader(build_dataset(cfg, "train"), batch_size=32, shuffle=True, collate_fn=collate,
                                         generator=torch.Generator().manual_seed(0))
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    for _ in range(epochs):
        for batch in loader:
            loss = model.loss(batch)["loss"]
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model


def last_action_only_ceiling(dataset) -> float:
    """Best top-1 (%) of any predictor that sees only the latest action: majority target per latest action."""
    seq = dataset.sequence                                              # [N, T + 1]
    prev, nxt = seq[:, 1:-1].reshape(-1), seq[:, 2:].reshape(-1)
    best = sum(np.bincount(nxt[prev == a]).max() for a in np.unique(prev))
    return 100 * best / len(nxt)


def test_learns_next_action_rule_far_above_chance():
    cfg = tiny_cfg()
    chance = 100 / (cfg.data.num_verbs * cfg.data.num_nouns)             # 8.3 % top-1
    ceiling = last_action_only_ceiling(build_dataset(cfg, "val"))      # the rule needs the last *two* actions
    untrained = evaluate(build_model(cfg), cfg, "val")
    model = train_plain(cfg, epochs=10)
    res = evaluate(model, cfg, "val")
    top1 = [v for k, v in res.items() if k.startswith("action_top1@")]
    assert len(top1) == 8
    assert min(top1) > 80.0 > 3 * chance, res
    assert min(top1) > ceiling + 20.0, (ceiling, res)
    assert untrained["action_top1@1.0s"] < 30.0                          # the skill comes from training
    # verb/noun scores come from marginalising the action softmax (chance: 25 % verbs, 33 % nouns)
    assert res["verb_top1@1.0s"] > 80.0 and res["noun_top1@1.0s"] > 80.0
    assert res["action_top5@1s"] == res["action_top5@1.0s"]


def test_variants_learn_above_chance():
    cfg = tiny_cfg("model.decoder_input=autoregressive", "model.semantic_source=predicted",
                   "model.modality_fusion=mean", "data.modalities=[rgb, obj]", "data.feature_dims=[16, 16]")
    model = train_plain(cfg, epochs=8)
    res = evaluate(model, cfg, "val")
    assert res["action_top1@2.0s"] > 50.0, res                            # chance 8.3 %
    batch = collate([build_dataset(cfg, "val")[i] for i in range(4)])
    assert "alignment" in model.loss(batch)


def test_semantic_path_gets_gradients_and_fusion_modes_run():
    for fusion in ("gated", "cross_attention", "sum"):
        cfg = tiny_cfg(f"model.fusion={fusion}")
        torch.manual_seed(0)
        model = build_model(cfg)
        batch = collate([build_dataset(cfg, "val")[i] for i in range(4)])
        out = model.loss(batch)
        out["loss"].backward()
        rec = model.branches["rgb"].semantics.recognition.weight.grad
        assert rec is not None and rec.abs().sum() > 0
        assert model(batch["features"])["logits"].shape == (4, 8, 12)
        assert not any(p.requires_grad for p in model.buffers())


def test_label_embeddings_sources(tmp_path):
    cfg = tiny_cfg()
    a, b = label_embeddings(cfg), label_embeddings(cfg)
    assert a.shape == (12, 16) and torch.equal(a, b)                     # seeded: a reload rebuilds it
    np.save(tmp_path / "emb.npy", np.ones((12, 5), np.float32))
    cfg_file = apply_overrides(cfg, ["model.label_embedding_source=file", f"model.label_embeddings={tmp_path / 'emb.npy'}"])
    assert build_model(cfg_file).branches["rgb"].semantics.label_embeddings.shape == (12, 5)
    np.save(tmp_path / "bad.npy", np.ones((7, 5), np.float32))
    with pytest.raises(ValueError, match=r"\[C=12, E\]"):
        label_embeddings(apply_overrides(cfg_file, [f"model.label_embeddings={tmp_path / 'bad.npy'}"]))
    with pytest.raises(FileNotFoundError, match="missing.npy"):
        label_embeddings(apply_overrides(cfg_file, [f"model.label_embeddings={tmp_path / 'missing.npy'}"]))


@pytest.mark.slow
def test_label_embeddings_from_packaged_minilm(minilm_embedder):
    cfg = tiny_cfg("model.label_embedding_source=text_encoder")
    emb = label_embeddings(cfg)
    assert emb.shape == (12, 384)
    # "verb0 noun0" is closer to "verb0 noun1" than to "verb3 noun2" for a real sentence encoder
    sims = emb @ emb.T
    assert sims[0, 1] > sims[0, 11]


def _rulstm_folder(root: Path) -> None:
    """A tiny RULSTM data folder: splits, actions.csv, class CSVs, many-shot lists and rgb/obj LMDBs."""
    import lmdb

    (root / "actions.csv").write_text("id,action,verb,noun\n0, take_pan,0,0\n1, take_knife,0,1\n2, wash_pan,1,0\n")
    (root / "EPIC_verb_classes.csv").write_text("verb_id,class_key,verbs\n0,take,['take']\n1,wash,['wash']\n")
    (root / "EPIC_noun_classes.csv").write_text("noun_id,class_key,nouns\n0,pan,['pan']\n1,knife,['knife']\n")
    (root / "EPIC_many_shot_verbs.csv").write_text("verb_class,verb\n0,take\n")
    (root / "EPIC_many_shot_nouns.csv").write_text("noun_class,noun\n1,knife\n")
    rows = [(i, "P01_01", 300 + 150 * i, 330 + 150 * i, *[(0, 0), (0, 1), (1, 0)][i % 3], i % 3) for i in range(6)]
    rows.append((99, "P01_01", 4, 20, 0, 0, 0))                          # too early: discarded
    text = "".join(",".join(map(str, r)) + "\n" for r in rows)
    (root / "training.csv").write_text(text)
    (root / "validation.csv").write_text(text)
    rng = np.random.default_rng(0)
    for modality, dim in (("rgb", 8), ("obj", 5)):
        env = lmdb.open(str(root / modality), map_size=1 << 24)
        with env.begin(write=True) as txn:
            for r in rows[:-1]:
                for f in rulstm_past_frames(r[2]):
                    txn.put(rulstm_frame_key("P01_01", f).encode(), rng.standard_normal(dim).astype(np.float32).tobytes())
        env.close()


def test_rulstm_feature_path_end_to_end(tmp_path):
    _rulstm_folder(tmp_path)
    cfg = merge(VSTransGRUExperiment(), read_yaml(CONFIGS / "ek55.yaml"))
    cfg = apply_overrides(cfg, [f"data.root={tmp_path}", "data.modalities=[rgb, obj]", "data.feature_dims=[8, 5]",
                                "model.hidden_dim=16", "model.num_heads=2", "model.ff_dim=32", "model.encoder_layers=1",
                                "model.label_embedding_source=random", "model.label_embedding_dim=8"])
    ds = build_dataset(cfg, "train")
    assert len(ds) == 6
    item = ds[1]
    assert item["features"]["rgb"].shape == (14, 8) and item["targets"].tolist() == [1] * 8
    # one label per past frame; here no segment covers them (labelled frames: test_vs_transgru_data.py)
    assert item["observed_labels"].tolist() == [-100] * 14
    model = build_model(cfg)
    assert model.loss(collate([ds[i] for i in range(3)]))["loss"].isfinite()
    res = evaluate(model, cfg, "val")
    scores, targets = predict_scores(model, build_dataset(cfg, "val"))
    # output j is tau_a = 2.0 - 0.25 j s: the 1 s scores are output 4 (hand-computed top-1 over the 6 rows)
    assert res["action_top1@1.0s"] == pytest.approx(100 * np.mean(scores[:, 4].argmax(-1) == targets[:, 4]))
    assert res["action_top1@2.0s"] == pytest.approx(100 * np.mean(scores[:, 0].argmax(-1) == targets[:, 0]))


def test_missing_inputs_raise_clear_errors(tmp_path):
    cfg = merge(VSTransGRUExperiment(), read_yaml(CONFIGS / "ek55.yaml"))
    with pytest.raises(FileNotFoundError, match="EPIC_verb_classes.csv"):
        build_model(apply_overrides(cfg, [f"data.root={tmp_path}", "model.label_embedding_source=random"]))
    egtea = merge(VSTransGRUExperiment(), read_yaml(CONFIGS / "egtea.yaml"))
    with pytest.raises(FileNotFoundError, match="actions.csv"):
        build_model(apply_overrides(egtea, [f"data.root={tmp_path}", "model.label_embedding_source=random"]))
    with pytest.raises(ValueError, match="data.root is empty"):
        build_dataset(apply_overrides(cfg, ["data.root="]), "train")
    with pytest.raises(ValueError, match="split"):
        build_dataset(tiny_cfg(), "dev")
    model = build_model(tiny_cfg())
    with pytest.raises(KeyError, match="obj"):
        model({"rgb": torch.zeros(2, 14, 16), "flow": torch.zeros(2, 14, 16)})


def test_method_spec_and_configs_load():
    assert METHOD.name == "vs_transgru" and METHOD.collate_fn is collate
    for name in ("ek55", "ek100", "egtea", "tiny_synthetic"):
        path = CONFIGS / f"{name}.yaml"
        assert path.read_text().startswith("# mmreason train --config vs_transgru/")
        merge(VSTransGRUExperiment(), read_yaml(path))                    # every override is a known key
