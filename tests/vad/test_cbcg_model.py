"""CBCG parts: top-k MIL, cross-batch memory, batch 2-means, clustering loss; learning on Gaussian feature bags."""
import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score
from torch.utils.data import DataLoader

from mmreason.config import apply_overrides
from mmreason.methods.cbcg import METHOD, CbcgConfig, CbcgExperiment
from mmreason.methods.cbcg.model import (CbcgModel, CrossBatchMemory, batch_clustering_loss, guided_topk_mean, mil_loss,
                                         topk_mean, two_means)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_topk_mil_loss_matches_hand_computation():
    normal = torch.tensor([[0.1, 0.2, 0.3, 0.0]])
    abnormal = torch.tensor([[0.9, 0.1, 0.5, 0.7]])
    assert topk_mean(abnormal, 2).item() == pytest.approx(0.8)
    expected = -(np.log(1 - 0.25) + np.log(0.8)) / 2  # BCE(mean top-2 of normal -> 0, of abnormal -> 1)
    assert mil_loss(normal, abnormal, 2).item() == pytest.approx(expected, rel=1e-5)


def test_guided_topk_selects_by_the_cluster_posterior():
    scores = torch.tensor([[0.9, 0.8, 0.2, 0.1]], requires_grad=True)  # the head likes segments 0 and 1
    posterior = torch.tensor([[0.0, 0.1, 1.0, 0.9]])  # the abnormal cluster holds segments 2 and 3
    assert guided_topk_mean(scores, posterior, 2, 0.0).item() == pytest.approx(0.85)  # plain top-k
    assert guided_topk_mean(scores, posterior, 2, 1.0).item() == pytest.approx(0.15)  # cluster's picks
    # blend 0.5: ranks 0.45, 0.45, 0.6, 0.5 -> segments 2 and 3
    out = guided_topk_mean(scores, posterior, 2, 0.5)
    assert out.item() == pytest.approx(0.15)
    out.backward()
    assert scores.grad.tolist() == [[0.0, 0.0, 0.5, 0.5]]  # gradient reaches the selected scores only


def test_cross_batch_memory_is_fifo_per_cluster():
    mem = CrossBatchMemory(capacity=3, dim=1)
    mem.push(torch.tensor([[1.0], [2.0], [3.0]]), torch.tensor([False, True, False]))
    assert mem.get("normal")[:, 0].tolist() == [1.0, 3.0] and mem.get("abnormal")[:, 0].tolist() == [2.0]
    mem.push(torch.tensor([[4.0], [5.0]]), torch.tensor([False, False]))
    assert sorted(mem.get("normal")[:, 0].tolist()) == [3.0, 4.0, 5.0]  # the oldest (1.0) was overwritten
    mem.push(torch.arange(10.0)[:, None], torch.ones(10, dtype=torch.bool))
    assert sorted(mem.get("abnormal")[:, 0].tolist()) == [7.0, 8.0, 9.0]
    empty = CrossBatchMemory(0, 2)
    empty.push(torch.ones(4, 2), torch.tensor([True, False, True, False]))
    assert len(empty.get("normal")) == len(empty.get("abnormal")) == 0


def test_two_means_names_the_abnormal_cluster_and_honours_anchors():
    pts = torch.tensor([[0.0, 0.0], [0.1, 0.0], [0.0, 0.1], [5.0, 5.0], [5.1, 5.0]])
    from_normal = torch.tensor([True, True, False, False, False])
    for perm in (torch.arange(5), torch.tensor([4, 2, 0, 3, 1])):  # order of points does not matter
        assign = two_means(pts[perm], from_normal[perm], iters=5, anchor_normal=False)
        assert assign.tolist() == [i >= 3 for i in perm.tolist()]
    forced = torch.tensor([False, False, True, False, False])
    assert two_means(pts, from_normal, 5, True, force_abnormal=forced).tolist() == [False, False, True, True, True]
    # with anchoring, normal-video points stay normal even when placed in the far group
    assert not two_means(pts, torch.tensor([True, True, False, True, False]), 5, True)[3]


def test_batch_clustering_loss_hand_computation():
    emb = torch.tensor([[1.0, 0.0], [0.0, 1.0]], requires_grad=True)
    is_abn = torch.tensor([False, True])
    mem_n, mem_a = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 0.5]])
    loss, centres = batch_clustering_loss(emb, is_abn, mem_n, mem_a, margin=2.0)
    assert centres.tolist() == [[1.0, 0.0], [0.0, 0.75]]  # memory members join the centres
    compact = (0.0 + 0.25 ** 2) / 2
    separation = (2.0 - np.hypot(1.0, 0.75)) ** 2
    assert loss.item() == pytest.approx(compact + separation, rel=1e-5)
    loss.backward()
    assert emb.grad is not None and emb.grad.abs().sum() > 0


def test_cbcg_loss_terms_and_baseline_switch():
    torch.manual_seed(0)
    cfg = CbcgConfig(feature_dim=8, hidden_dims=[16], embed_dim=4, memory_size=64, cluster_warmup_steps=0)
    batch = {"normal": torch.randn(3, 2, 32, 8), "abnormal": torch.randn(3, 2, 32, 8)}
    model = CbcgModel(cfg).train()
    out = model.loss(batch)
    assert {"loss", "mil", "cluster", "guide", "abnormal_cluster_share"} <= set(out)
    # 96 anchored normal-video segments fill the normal queue (capacity 64); the forced top-1s join the abnormal one
    assert len(model.memory.get("normal")) == 64 and 3 <= len(model.memory.get("abnormal")) <= 64
    base = CbcgModel(CbcgConfig(feature_dim=8, hidden_dims=[16], embed_dim=4, use_clustering=False)).train()
    assert set(base.loss(batch)) == {"loss", "mil"}
    assert model.segment_scores(torch.randn(1, 2, 50, 8)).shape == (1, 50)  # all test snippets, crops averaged


def _train(cfg, steps):
    torch.manual_seed(cfg.train.seed)
    model, ds = METHOD.build_model(cfg), METHOD.build_dataset(cfg, "train")
    opt = torch.optim.Adam(model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    g, step = torch.Generator().manual_seed(cfg.train.seed), 0
    while step < steps:
        for batch in DataLoader(ds, batch_size=cfg.train.batch_size, shuffle=True, generator=g):
            out = model.loss(batch)
            opt.zero_grad()
            out["loss"].backward()
            opt.step()
            step += 1
            if step >= steps:
                break
    return model


@pytest.mark.slow
def test_cbcg_learns_gaussian_bags_well_beyond_chance():
    from mmreason.config import merge, read_yaml
    from pathlib import Path
    import mmreason.methods.cbcg as pkg

    cfg = merge(CbcgExperiment(), read_yaml(Path(pkg.__file__).parent / "configs" / "tiny_synthetic.yaml"))
    model = _train(cfg, 150)
    metrics = METHOD.evaluate(model, cfg, "test")
    assert metrics["auc"] > 0.75 and metrics["ap"] > 0.3  # chance: AUC 0.5, AP = anomalous frame share (~0.06)
    # the clustering branch separates the test segments: distance to the normal-memory centre ranks anomalies
    ds = METHOD.build_dataset(cfg, "test")
    c_normal = model.memory.get("normal").mean(0)
    dist, labels = [], []
    model.eval()
    for item in ds:
        with torch.no_grad():
            _, emb = model(item["features"][None])
        dist.append(((emb[0] - c_normal) ** 2).sum(-1).numpy())
        labels.append(item["frame_labels"].numpy()[::16])
    assert roc_auc_score(np.concatenate(labels), np.concatenate(dist)) > 0.6


# Where the guidance carries information top-k MIL lacks (README "Synthetic check"): every video, normal or
# abnormal, has normal noise spikes (10% of snippets shifted by 16 along fresh random directions), the anomaly is
# one coherent direction (shift 3, 5-20% of an abnormal video), and labels are scarce (32 + 32 training videos,
# 150 steps). Top-k selection by the head alone is often drawn to the spikes of abnormal bags; the batch clustering
# with the cross-batch memory collects the coherent anomalous segments in one cluster, and ranking the MIL
# positives by that cluster's posterior keeps the spikes out. Survey (same data, seed, head and steps for both):
# seeds 0-7 gain +0.002 .. +0.115 frame AUC (mean +0.020); seeds 8-15 gain on 7 of 8 (seed 9: -0.013).
SPIKY_SCARCE = ["data.synthetic_distractor_rate=0.1", "data.synthetic_distractor_shift=16", "data.synthetic_types=1",
                "data.synthetic_train=[32,32]"]


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_cbcg_beats_topk_mil_baseline_on_spiky_label_scarce_bags(seed):
    from mmreason.config import merge, read_yaml
    from pathlib import Path
    import mmreason.methods.cbcg as pkg

    tiny = merge(CbcgExperiment(), read_yaml(Path(pkg.__file__).parent / "configs" / "tiny_synthetic.yaml"))
    cfg = apply_overrides(tiny, SPIKY_SCARCE + [f"data.seed={seed}", f"train.seed={seed}"])
    baseline = apply_overrides(cfg, ["model.use_clustering=false"])  # same data, seed, head and steps
    auc_cbcg = METHOD.evaluate(_train(cfg, 150), cfg, "test")["auc"]
    auc_base = METHOD.evaluate(_train(baseline, 150), baseline, "test")["auc"]
    assert auc_cbcg > 0.9  # chance 0.5
    assert auc_cbcg > auc_base + 0.001, (auc_cbcg, auc_base)  # smallest gain over seeds 0-7: +0.002
