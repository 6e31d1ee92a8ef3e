"""CBCG experiment config (arXiv 2212.08506). Only the abstract of the paper could be read (specs/vad.md §3.1):
every architectural and loss choice below is a reconstruction and its help text says so ("[reconstruction]")."""
from __future__ import annotations

from dataclasses import dataclass

from mmreason.config import option
from mmreason.engine.config import TrainConfig


@dataclass
class CbcgConfig:
    """Feature network, scoring head, clustering branch, batch clustering loss and cross-batch memory."""

    feature_dim: int = option(2048, help="snippet feature width (I3D RGB: 2048 in the RTFM UCF-Crime release, "
                                         "1024 in the official XD-Violence release)")
    backbone: str = option("mlp", help="feature network before the MLP: 'mlp' = the MLP alone (per snippet), 'mtn' = "
                                       "RTFM's multi-scale temporal network first (three dilated 1-D convolutions, "
                                       "dilation 1/2/4, and a non-local block, fused by a 3-tap convolution with a "
                                       "residual; RTFM's released Aggregate module, widths feature_dim/4) "
                                       "[reconstruction: spec §3.3 allows 'MLP or temporal conv/MTN']",
                           choices=("mlp", "mtn"))
    hidden_dims: list[int] = option(default_factory=lambda: [512, 128],
                                    help="feature MLP widths, shared by both branches [reconstruction: spec §3.3]")
    dropout: float = option(0.7, help="dropout after each hidden layer [reconstruction: RTFM's value]")
    embed_dim: int = option(64, help="clustering-branch embedding width (L2-normalised) [reconstruction]")
    cluster_on: str = option("input", help="what the batch 2-means clusters and the guidance posterior measures, "
                                           "L2-normalised (crop mean): 'input' = the snippet features themselves "
                                           "(the clusters follow the feature geometry, not what the MIL head has "
                                           "learned; the batch clustering loss then has no weights to train), "
                                           "'backbone' = the shared MLP features, 'branch' = a linear projection of "
                                           "them to embed_dim (both trained by the clustering loss). Default: the "
                                           "only one whose guidance clearly beats the baseline in the README's "
                                           "ablation [reconstruction]",
                             choices=("input", "backbone", "branch"))
    top_k: int = option(3, help="top-k segments whose mean score is a bag's score in the MIL loss; 0 = S // 16 + 1 "
                                "for S segments, the XD-Violence peers' rule (XDVioDet, UR-DMU: 13 for 200 segments, "
                                "3 for 32) [reconstruction: RTFM's k = 3 for 32 segments]")
    smoothness_weight: float = option(8e-5, help="temporal smoothness of abnormal-bag scores (Sultani et al. "
                                                 "lambda_1) [reconstruction: the baseline CBCG extends]")
    sparsity_weight: float = option(8e-5, help="sparsity of abnormal-bag scores (Sultani et al. lambda_2) "
                                               "[reconstruction]")
    use_clustering: bool = option(True, help="CBCG (True) or the plain top-k MIL baseline it extends (False)")
    num_clusters: int = option(2, help="k of the batch k-means: one normal and one abnormal cluster "
                                       "[reconstruction; the abstract speaks of 'normal and abnormal clusters']",
                               choices=(2,))
    kmeans_iters: int = option(10, help="Lloyd iterations of the batch k-means [reconstruction]")
    cluster_init: str = option("topk", help="initial k-means centres: 'topk' = normal-video mean and the mean of "
                                            "the abnormal bags' top-k scored segments (plus the memory's members), "
                                            "'farthest' = normal-video mean and the point farthest from it "
                                            "[reconstruction]", choices=("topk", "farthest"))
    anchor_normal: bool = option(True, help="segments of normal videos always belong to the normal cluster "
                                            "(they are known to be normal) [reconstruction]")
    anchor_top_abnormal: int = option(1, help="the top-scored segments of each abnormal bag always belong to the "
                                              "abnormal cluster (the MIL assumption: an abnormal video holds an "
                                              "anomaly), which keeps the cluster from emptying [reconstruction]")
    memory_size: int = option(1024, help="cross-batch memory: embeddings of previous batches' segments kept per "
                                         "cluster (FIFO) and clustered together with the current batch; 0 = "
                                         "batch clustering only [reconstruction: the abstract gives no form/size]")
    cluster_weight: float = option(0.1, help="weight of the batch clustering loss [reconstruction]")
    cluster_margin: float = option(1.0, help="required distance between the normal and abnormal centres of the "
                                             "unit-norm embeddings [reconstruction]")
    guide_weight: float = option(0.3, help="weight of the clustering-guided segment loss: BCE of each abnormal-"
                                           "video segment's score against its soft abnormal-cluster assignment "
                                           "[reconstruction]")
    guide_temperature: float = option(0.1, help="temperature of the soft assignment softmax(-||e - c||^2 / tau) "
                                                "[reconstruction]")
    guide_targets: str = option("soft", help="guidance targets: soft assignments or hard 0/1 cluster labels "
                                             "[reconstruction]", choices=("soft", "hard"))
    guide_selection: float = option(1.0, help="clustering-guided MIL selection: an abnormal bag's top-k segments are "
                                              "ranked by (1 - w) * head score + w * abnormal-cluster posterior; 0 = "
                                              "ranked by the head alone [reconstruction]")
    test_guidance: float = option(0.0, help="test-time guided scoring: a snippet's score is (1 - w) * head score + "
                                            "w * its abnormal-cluster posterior softmax(-||e - c||^2 / "
                                            "guide_temperature) against the centres of the last training step "
                                            "(kept in the checkpoint); 0 = the head alone [reconstruction: spec "
                                            "§3.3, 'optionally fused with the cluster-distance score']")
    cluster_warmup_steps: int = option(500, help="training steps of plain MIL before the clustering and guidance "
                                               "losses switch on (so the top-k seeds of the abnormal cluster are "
                                               "meaningful) [reconstruction]")


@dataclass
class CbcgDataConfig:
    """Feature bags: UCF-Crime (RTFM 10-crop release), XD-Violence (official 5-crop release) or synthetic."""

    dataset: str = option("synthetic", help="which features", choices=("synthetic", "ucf_crime", "xd_violence"))
    root: str = option("", help="folder the list files' relative paths resolve against (default: the list's folder)")
    train_list: str = option("", help="training feature list (UCF: ucf-i3d.list; XD: rgb.list)")
    test_list: str = option("", help="test feature list (UCF: ucf-i3d-test.list; XD: rgbtest.list)")
    gt_file: str = option("", help="test frame labels: concatenated .npy (gt-ucf.npy / gt.npy) or an interval "
                                   ".txt (Temporal_Anomaly_Annotation_for_Testing_Videos.txt / annotations.txt)")
    normal_pattern: str = option(r"Normal|label_A", help="regex on a video name that marks it normal")
    num_segments: int = option(32, help="training segments per video, each the mean of its snippets (Sultani et "
                                        "al. / RTFM on UCF-Crime: 32; UR-DMU on XD-Violence: 200)")
    train_crops: str = option("video", help="training bags: 'video' = a video's crops form one bag and their "
                                            "segment scores are averaged (RTFM on UCF-Crime); 'crop' = every crop "
                                            "is its own bag, as the XD-Violence peers train (XDVioDet, UR-DMU list "
                                            "one feature file per crop). Test scores always average the crops",
                              choices=("video", "crop"))
    gt_interval_end: str = option("inclusive", help="end frame of an interval annotation (.txt gt_file): "
                                                    "'inclusive' (UCF-Crime, as RTFM's make_gt_ucf.py) or "
                                                    "'exclusive' (XD-Violence, as XDVioDet's make_gt.py)",
                                  choices=("inclusive", "exclusive"))
    synthetic_train: tuple[int, int] = option((64, 64), help="synthetic training videos (normal, abnormal)")
    synthetic_test: tuple[int, int] = option((40, 40), help="synthetic test videos (normal, abnormal)")
    synthetic_snippets: tuple[int, int] = option((48, 96), help="synthetic snippets per video (min, max)")
    synthetic_shift: float = option(1.0, help="synthetic anomaly mean shift along its unit direction")
    synthetic_types: int = option(4, help="synthetic anomaly types (directions)")
    synthetic_abnormal_fraction: tuple[float, float] = option((0.05, 0.2), help="synthetic anomalous run length "
                                                                                 "as a fraction of the video")
    synthetic_video_shift: float = option(0.5, help="synthetic per-video feature offset (std)")
    synthetic_distractor_rate: float = option(0.0, help="synthetic normal noise spikes: per-snippet probability "
                                                        "in every video (0 = none)")
    synthetic_distractor_shift: float = option(0.0, help="synthetic noise-spike size along a fresh random direction")
    seed: int = option(0, help="seed of the synthetic data and of the bag pairing")


@dataclass
class CbcgEvalConfig:
    """Test-time scoring."""

    max_videos: int = option(0, help="evaluate only the first N test videos; 0 = all")
    smoothing_sigma: float = option(0.0, help="Gaussian smoothing of each test video's frame scores, sigma in frames "
                                              "(after the x16 expansion); 0 = off, as RTFM, XDVioDet and UR-DMU score")


@dataclass
class CbcgExperiment:
    """CBCG (arXiv 2212.08506): weakly supervised VAD with cross-batch clustering guidance on I3D feature bags."""

    model: CbcgConfig = option(default_factory=CbcgConfig, help="network, losses and memory")
    data: CbcgDataConfig = option(default_factory=CbcgDataConfig, help="feature bags")
    eval: CbcgEvalConfig = option(default_factory=CbcgEvalConfig, help="evaluation")
    train: TrainConfig = option(default_factory=lambda: TrainConfig(
        optimizer="adam", lr=1e-3, weight_decay=5e-4, lr_schedule="constant", batch_size=32, epochs=1,
        max_steps=5000, eval_every=500, save_every=500, log_every=50,
        find_unused_parameters=True),  # the cluster branch gets no gradient (warm-up; cluster_on input/backbone)
        help="[reconstruction: RTFM-style Adam lr 1e-3, wd 5e-4, 32 normal + 32 abnormal bags per batch; the "
             "paper's schedule is not known]")
