"""VS-TransGRU experiment config. Defaults follow the RULSTM protocol (spec §1.3) for data and evaluation;
every model choice the paper's abstract does not state is a named field marked *reconstruction* in its help."""
from __future__ import annotations

from dataclasses import dataclass

from mmreason.config import option
from mmreason.engine.config import TrainConfig


@dataclass
class VSTransGRUConfig:
    """The network: per-modality visual-semantic fusion, Transformer encoder, GRU decoder, late fusion."""

    hidden_dim: int = option(1024, help="width d of every branch (RULSTM uses 1024 hidden units; reconstruction)")
    num_heads: int = option(8, help="attention heads of the Transformer encoder (reconstruction)")
    encoder_layers: int = option(2, help="Transformer encoder layers over the observed steps (reconstruction)")
    ff_dim: int = option(2048, help="feed-forward width of the encoder layers (reconstruction)")
    dropout: float = option(0.1, help="dropout in the encoder, on the GRU inputs and before the classifiers (reconstruction)")
    semantic_source: str = option(
        "label_probs", choices=("label_probs", "predicted", "none"),
        help="semantic features: 'label_probs' = recognition probabilities x label embeddings (paper variant a, "
             "from class labels), 'predicted' = an MLP maps the visual feature into the label-embedding space "
             "(variant b, from the observation), 'none' = visual only (ablation)")
    semantic_temperature: float = option(1.0, help="softmax temperature of the recognition probabilities (reconstruction)")
    label_embedding_source: str = option(
        "text_encoder", choices=("text_encoder", "file", "random"),
        help="where the [C, E] action-label embeddings come from: mmreason.text's sentence embedder over the action "
             "names, a file (label_embeddings), or a seeded random matrix (tests only)")
    label_embeddings: str = option("", help="path to a [C, E] .npy/.pt label-embedding matrix (label_embedding_source=file)")
    text_model: str = option("", help="sentence-embedding model for label_embedding_source=text_encoder; empty = mmreason.text default (MiniLM)")
    label_template: str = option("{verb} {noun}", help="text embedded for each action class (reconstruction)")
    label_embedding_dim: int = option(384, help="E for label_embedding_source=random")
    label_embedding_seed: int = option(0, help="seed of the random label embeddings (so a reload rebuilds the same matrix)")
    fusion: str = option("gated", choices=("gated", "cross_attention", "sum"),
                         help="visual-semantic fusion: 'gated' f = g*v + (1-g)*s with g = sigmoid(W[v;s]); "
                              "'cross_attention' visual queries attend to the semantic tokens (residual); 'sum' v + s "
                              "(all reconstructions of the paper's fusion module)")
    encoder_summary: str = option("last", choices=("last", "mean"),
                                  help="encoder output that initialises the GRU state (reconstruction)")
    decoder_input: str = option(
        "observation", choices=("observation", "autoregressive"),
        help="what the GRU consumes at anticipation step j: 'observation' = the fused feature of the frame observed "
             "at that anticipation time (outputs valid for each tau_a as in RULSTM); 'autoregressive' = the semantic "
             "embedding of its own previous prediction (decodes the future from the encoder window only)")
    share_step_classifier: bool = option(False, help="one classifier for all anticipation steps instead of one per step")
    modality_fusion: str = option("attention", choices=("attention", "mean"),
                                  help="late fusion of the branch logits: 'attention' = softmax weights from the branch "
                                       "summaries (MATT-like), 'mean' = average (reconstruction)")
    branch_loss_weight: float = option(1.0, help="weight of the per-branch cross-entropy next to the fused one (multi-modal only)")
    recognition_loss_weight: float = option(0.5, help="weight of the recognition cross-entropy on observed steps with known labels")
    alignment_loss_weight: float = option(1.0, help="weight of the 1 - cos alignment of predicted semantics to E[label] (variant b)")


@dataclass
class VSTransGRUDataConfig:
    """RULSTM features and splits, or synthetic sequences."""

    dataset: str = option("rulstm", choices=("rulstm", "synthetic"), help="real RULSTM features or synthetic sequences")
    root: str = option("", help="RULSTM data folder holding the split CSVs, actions.csv and one feature store per modality")
    train_csv: str = option("training.csv", help="training split CSV (relative to root)")
    val_csv: str = option("validation.csv", help="validation split CSV (relative to root)")
    test_csv: str = option("", help="test split CSV with labels; empty = use val_csv (RULSTM reports validation)")
    actions_csv: str = option("actions.csv", help="action id -> (verb, noun) table (relative to root)")
    verb_classes_csv: str = option("", help="EPIC_verb_classes.csv for label texts; empty = take texts from actions.csv")
    noun_classes_csv: str = option("", help="EPIC_noun_classes.csv for label texts")
    many_shot_verbs_csv: str = option("", help="EPIC_many_shot_verbs.csv: mean top-5 recall over many-shot classes "
                                              "(EK-55); empty = over all present classes (EK-100, EGTEA)")
    many_shot_nouns_csv: str = option("", help="EPIC_many_shot_nouns.csv (EK-55)")
    modalities: list[str] = option(default_factory=lambda: ["rgb", "flow", "obj"],
                                   help="feature stores under root, one branch each (RULSTM: rgb, flow, obj)")
    feature_dims: list[int] = option(default_factory=lambda: [1024, 1024, 352],
                                     help="feature size of each modality (TSN RGB/flow 1024, object 352)")
    feature_format: str = option("lmdb", choices=("lmdb", "npy"), help="feature store format")
    img_tmpl: str = option("frame_{:010d}.jpg", help="LMDB key template after '{video}_' (RULSTM)")
    fps: float = option(30.0, help="frame rate of the annotations' frame numbers")
    time_step: float = option(0.25, help="seconds between feature steps (RULSTM alpha)")
    observed_steps: int = option(6, help="encoding steps S_enc (RULSTM)")
    anticipation_steps: int = option(8, help="anticipation steps S_ant: outputs at 2.0, 1.75, ..., 0.25 s")
    observed_labels: str = option(
        "segments", choices=("segments", "none"),
        help="per-step observed labels for the recognition/alignment losses: 'segments' = the action of the "
             "annotated segment covering each past frame (RULSTM data; the synthetic data shows its labels), "
             "'none' = no observed label (the semantic branch then learns only through the anticipation loss)")
    segment_csvs: list[str] = option(
        default_factory=list,
        help="more RULSTM-format CSVs (relative to root) whose segments label the past frames, next to the split's "
             "own CSV (which alone is the default, so no label of another split is trained on; EGTEA's splits "
             "divide a video's actions, so frames inside held-out actions stay unlabelled)")
    observed_overlap: str = option(
        "latest", choices=("latest", "unknown"),
        help="a past frame inside several segments with different actions: 'latest' = the segment that started "
             "last, 'unknown' = no label (reconstruction; the paper does not say)")
    score_discarded: bool = option(False, help="count rows without enough past frames as misses with zero scores "
                                               "(RULSTM does so on EK-100 validation)")
    num_verbs: int = option(4, help="synthetic: verb classes (actions = every verb x noun pair)")
    num_nouns: int = option(3, help="synthetic: noun classes")
    num_samples: int = option(512, help="synthetic: samples in the training split (val/test get a quarter)")
    noise: float = option(0.5, help="synthetic: feature noise std around each class prototype")
    seed: int = option(0, help="synthetic: seed of the sequence rule, prototypes and samples")
    eval_batch_size: int = option(256, help="batch size for evaluation")


@dataclass
class VSTransGRUExperiment:
    """VS-TransGRU (arXiv 2307.03918) on RULSTM-protocol features."""

    model: VSTransGRUConfig = option(default_factory=VSTransGRUConfig, help="the network")
    data: VSTransGRUDataConfig = option(default_factory=VSTransGRUDataConfig, help="features, splits and vocabulary")
    train: TrainConfig = option(
        default_factory=lambda: TrainConfig(optimizer="adamw", lr=1e-4, weight_decay=1e-2, batch_size=128, epochs=50,
                                            warmup_steps=500, grad_clip=1.0),
        help="optimisation (reconstruction: the paper's values are not available; RULSTM itself uses SGD lr 0.01, "
             "momentum 0.9, batch 128, 100 epochs)")
