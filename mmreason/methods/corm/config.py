"""Experiment config of CORM (arXiv 2303.08463). Fields marked [reconstruction] are not from the paper.

The paper's method section could not be read (specs/anticipation_tal.md §4.2): every CORM module choice
below is a reconstruction consistent with its abstract, kept as a named field. Backbone defaults follow the
PDAN / MS-TCT public code; training defaults follow MLAD's reported setup (spec §1.4).
"""
from __future__ import annotations

from dataclasses import dataclass

from mmreason.config import option
from mmreason.engine.config import TrainConfig


@dataclass
class CORMModelConfig:
    """Backbone + co-occurrence relation module."""

    backbone: str = option("pdan", help="sequence backbone", choices=("pdan", "mstct"))
    use_corm: bool = option(True, help="put CORM on the backbone (false = backbone + linear per-frame classifier)")
    # PDAN (WACV'21 / TSU pipeline defaults)
    hidden_dim: int = option(512, help="PDAN feature width (num_f_maps)")
    pdan_layers: int = option(5, help="PDAN blocks; block i uses dilation 2**i")
    dropout: float = option(0.5, help="dropout in PDAN blocks, and on MS-TCT's input features and fused output "
                                      "(both release nn.Dropout() = 0.5)")
    # MS-TCT (CVPR'22 train.py defaults)
    mstct_stage_dims: list[int] = option(default_factory=lambda: [256, 384, 576, 864],
                                         help="MS-TCT channels per stage (D=256, gamma=1.5)")
    mstct_blocks: int = option(3, help="Global-Local Relational blocks per MS-TCT stage (B)")
    mstct_heads: int = option(8, help="attention heads in MS-TCT blocks (H)")
    mstct_mlp_ratio: int = option(8, help="FFN expansion in MS-TCT blocks (theta)")
    mstct_out_dim: int = option(512, help="Temporal Scale Mixer output width (D_v)")
    mstct_dropout: float = option(0.0, help="dropout inside MS-TCT blocks (0 as released)")
    heatmap_weight: float = option(0.05, help="MS-TCT only: weight of its heat-map branch's focal loss next to the "
                                              "BCE (run script: alpha_l 1, beta_l 0.05); 0 = no heat-map branch")
    heatmap_pairing: str = option("released", choices=("released", "per_video"),
                                  help="MS-TCT heat-map focal loss: 'released' = as MS-TCT's utils.focal_loss, which "
                                       "scores each video's heat-map against the targets of every video in the "
                                       "batch (what produced the published numbers); 'per_video' = each video "
                                       "against its own targets (the CenterNet loss it adapts)")
    # CORM [reconstruction]
    class_dim: int = option(32, help="[reconstruction] width of each class-specific feature; CORM's cost grows "
                                     "with C x class_dim per frame (128, MLAD's class-token width, made a PDAN "
                                     "training step 2.6x the backbone's FLOPs at C=65; see the README)")
    class_features: str = option("film", choices=("film", "linear"),
                                 help="[reconstruction] class-specific features: 'film' = shared projection "
                                      "modulated by a per-class scale/shift; 'linear' = one projection per class "
                                      "(MLAD-style)")
    visual_layers: int = option(1, help="[reconstruction] self-attention layers among the C class tokens of a "
                                        "frame (visual co-occurrence); 0 disables the visual branch")
    visual_heads: int = option(1, help="[reconstruction] heads of the class-token attention (1: with class_dim "
                                       "32, 4 heads cost 1.5x the time for the same synthetic result)")
    semantic_graph: str = option("cosine", choices=("cosine", "learned", "none"),
                                 help="[reconstruction] semantic co-occurrence graph over label embeddings: "
                                      "'cosine' = softmax(cos(E_i, E_j) / tau) off the diagonal, 'learned' = "
                                      "softmax of learned query/key projections of E, 'none' disables it")
    semantic_temperature: float = option(0.1, help="[reconstruction] tau of the cosine semantic graph")
    use_statistics: bool = option(True, help="[reconstruction] mix the training-set conditional probability "
                                              "matrix P(c_j | c_i) into the relation graph (ML-GCN style)")
    statistics_weight: float = option(0.5, help="[reconstruction] graph = (1-w) semantic + w statistics "
                                                "(w = 1 when the semantic graph is 'none')")
    graph_layers: int = option(1, help="[reconstruction] propagation steps Z_s = A Z W_s over the relation graph")
    base_logits: bool = option(True, help="[reconstruction] add the backbone's own linear per-frame logits to "
                                          "CORM's logits (residual)")
    label_embeddings: str = option("minilm", choices=("minilm", "file", "random"),
                                   help="label embedding source: the packaged all-MiniLM-L6-v2 over the class "
                                        "names (mmreason.text), a [C, E] .npy file, or fixed random vectors "
                                        "(no semantics; offline tests)")
    label_embedding_file: str = option("", help="[C, E] .npy label embeddings (label_embeddings='file')")
    label_embedding_dim: int = option(384, help="dimension of the random label embeddings")


@dataclass
class MultiLabelDataConfig:
    """Which dataset, and how its files are read (see mmreason/data/multilabel.py)."""

    dataset: str = option("synthetic", choices=("synthetic", "multithumos", "tsu", "charades", "ucf_crime_tal"),
                          help="dataset name; 'synthetic' generates co-occurring classes from `seed`")
    annotation_file: str = option("", help="PDAN/MS-TCT/MLAD JSON {video: {subset, duration, actions}}")
    features_root: str = option("", help="folder of <video>.npy per-snippet features [T, D]")
    class_list: str = option("", help="class list file ('<id> <name>', Charades 'c000 <name>' or '<name>' lines); "
                                      "empty = numbered names (synthetic: its own anchor/dependent names)")
    labels_root: str = option("", help="optional folder of <video>.npy frame labels [F, C] (replaces segments)")
    num_classes: int = option(8, help="number of classes C (MultiTHUMOS 65, TSU 51); 0 = count class_list; "
                                      "must match class_list when both are set")
    feature_dim: int = option(32, help="input feature width D (I3D RGB 1024; MLAD RGB+flow 2048)")
    class_index_base: int = option(0, help="first class id in the JSON (0 PDAN/TSU, 1 MLAD multithumos.json)")
    inclusive_bounds: bool = option(False, help="label start <= t <= end (MLAD) instead of start < t < end (PDAN)")
    feature_fps: float = option(0.0, help="snippets per annotation time unit; 0 = T / duration per video")
    train_subset: str = option("training", help="JSON subset used for split 'train'")
    eval_subset: str = option("testing", help="JSON subset used for splits 'val' and 'test'")
    max_snippets: int = option(0, help="random training crops of at most this many snippets; 0 = whole videos")
    skip_videos_without_actions: bool = option(False, help="drop videos with no annotated action")
    missing_features: str = option("error", choices=("error", "skip"),
                                   help="a video without a feature file: fail naming it, or skip it")
    seed: int = option(0, help="synthetic data seed")
    synthetic_train_videos: int = option(32, help="synthetic training videos")
    synthetic_test_videos: int = option(32, help="synthetic val/test videos")
    synthetic_anchor_strength: float = option(2.0, help="feature strength of synthetic anchor classes")
    synthetic_dependent_strength: float = option(0.5, help="feature strength of synthetic dependent classes")
    synthetic_noise: float = option(1.0, help="std of the synthetic feature noise")


@dataclass
class LocalizationEvalConfig:
    """Per-frame mAP and MLAD action-conditional metrics."""

    batch_size: int = option(1, help="videos per evaluation batch (PDAN/MS-TCT evaluate one video at a time)")
    nonzero_mean: bool = option(True, help="average AP over classes with non-zero AP (PDAN/MS-TCT report); "
                                           "false = over all classes")
    conditional_offsets: list[int] = option(default_factory=lambda: [0, 20, 40],
                                            help="MLAD action-conditional metrics at these offsets t (MS-TCT's "
                                                 "Evaluation.py reports 0, 20, 40); [] = off")
    threshold: float = option(0.5, help="probability threshold of the conditional precision/recall")
    sampled_25: bool = option(False, help="also report mAP_sampled25: per-frame mAP over 25 frames per video "
                                          "(frames 1, 1 + s, ... with s = int(T / 25), videos longer than 25 "
                                          "snippets only), MS-TCT's approximation of the Charades localization "
                                          "protocol")
    matrices_file: str = option("", help="write MLAD's per-pair conditional matrices (precision, recall, AP and "
                                         "support of c_i where c_j is present, for every offset) to this .npz")


@dataclass
class CORMExperiment:
    model: CORMModelConfig = option(default_factory=CORMModelConfig, help="backbone and CORM")
    data: MultiLabelDataConfig = option(default_factory=MultiLabelDataConfig, help="dataset")
    eval: LocalizationEvalConfig = option(default_factory=LocalizationEvalConfig, help="evaluation")
    train: TrainConfig = option(default_factory=lambda: TrainConfig(
        optimizer="adam", lr=1e-3, weight_decay=1e-6, batch_size=32, epochs=50, lr_schedule="constant"),
        help="training loop (MLAD's setup: Adam, lr 1e-3, wd 1e-6, batch 32) [reconstruction for CORM]")
