"""ICVL experiment config (arXiv 2505.01713).

Only the abstract of the paper could be read (specs/anticipation_tal.md §2.1-2.2), so every field below that is
marked *reconstruction* is a choice of this implementation (spec §2.3), not the paper's. Evaluation follows the
benchmarks' protocols: Ego4D LTA (spec §1.1: N = 8 observed, Z = 20 future, K = 5 sequences, edit distance) and
EK-55 / EGTEA Gaze+ (spec §1.2: EGO-TOPO splits, observed fractions 0.25 / 0.5 / 0.75, verb-set mAP All / Freq / Rare),
with the observed actions of the evaluation splits read from a recogniser's output (the ground truth is a labelled
oracle setting) and intentions from a VLM (a text-only model is announced and recorded as such).
"""
from __future__ import annotations

from dataclasses import dataclass

from mmreason.config import option
from mmreason.engine.config import TrainConfig

# an HF image-text-to-text model small enough for one GPU (or a patient CPU); any VLM id or folder works
DEFAULT_INTENTION_VLM = "HuggingFaceTB/SmolVLM-256M-Instruct"
DEFAULT_INSTRUCTION = ("Predict the next {z} actions of the camera wearer as verb noun pairs, separated by commas, "
                       "that follow the observed actions, the intention and common sense.")


@dataclass
class ICVLConfig:
    """The network and the prompt: intention fusion, projector, LLM with LoRA, example selection, sampling."""

    llm: str = option("embedded", help="causal LM: 'embedded' (the packaged Gemma 3 270M), 'tiny' (a 2-layer Llama "
                                       "built from scratch with a word-level tokenizer, tests/CPU), or any "
                                       "transformers model id or local folder (e.g. a 7B model on GPUs)")
    tiny_hidden: int = option(64, help="tiny LLM: hidden size")
    tiny_layers: int = option(2, help="tiny LLM: decoder layers")
    tiny_init_std: float = option(0.2, help="tiny LLM: std of its random weights; larger than the usual 0.02 so the "
                                            "frozen tied embeddings allow confident logits (loss can fall well below "
                                            "log(vocab))")
    tiny_seed: int = option(0, help="tiny LLM: seed of its random weights (a reload rebuilds the same model)")
    llm_dtype: str = option("auto", choices=("auto", "float32", "bfloat16", "float16"),
                            help="weights dtype of the frozen LLM (auto: float32 on CPU, bfloat16 on CUDA)")
    lora_r: int = option(8, help="LoRA rank (AntGPT's llama-recipes peft config; reconstruction for ICVL)")
    lora_alpha: int = option(32, help="LoRA alpha (AntGPT)")
    lora_dropout: float = option(0.05, help="LoRA dropout (AntGPT)")
    lora_targets: list[str] = option(default_factory=lambda: ["q_proj", "v_proj"],
                                     help="module names LoRA adapts (AntGPT: q_proj, v_proj); missing ones are an error")
    visual_dim: int = option(768, help="size of one visual feature (AntGPT: CLIP ViT-L/14 image embedding, 768)")
    fusion: bool = option(True, help="fuse the intention into the visual tokens (ICVL step 2); False skips the "
                                     "fusion block (ablation: the visual tokens then carry no intention)")
    fusion_dim: int = option(256, help="width of the intention-fusion block (reconstruction)")
    fusion_heads: int = option(4, help="attention heads of the fusion cross-attention (reconstruction)")
    fusion_ffn_mult: int = option(4, help="FFN width multiplier of the fusion block (reconstruction)")
    fusion_zero_init: bool = option(True, help="zero-init the cross-attention output projection, so the enhanced "
                                               "tokens start equal to the visual tokens (reconstruction)")
    max_intention_tokens: int = option(32, help="intention tokens fed to the fusion: the frozen LLM input "
                                                "embeddings of the intention text's first tokens (reconstruction)")
    projector: str = option("mlp", choices=("mlp", "linear"),
                            help="visual-to-LLM projector: LLaVA-1.5 2-layer GELU MLP or linear (reconstruction)")
    visual_placeholder: str = option("<visual>", help="prompt marker replaced by the soft visual tokens")
    instruction: str = option(DEFAULT_INSTRUCTION, help="instruction line of the prompt ({z} = number of actions; "
                                                        "wording after AntGPT's fine-tune prompt, reconstruction)")
    num_examples: int = option(4, help="in-context examples per prompt (reconstruction; spec §2.3 suggests 4-8)")
    visual_weight: float = option(0.5, help="lambda in s = lambda*cos(visual) + (1-lambda)*cos(text) for example "
                                            "selection (reconstruction)")
    intention_in_prompt: bool = option(True, help="also write the intention text into the LLM prompt ('Intention: "
                                                  "...'); False leaves the intention to the fusion into the visual "
                                                  "tokens alone (reconstruction; the abstract names the fusion)")
    example_text: str = option("observed+intention", choices=("observed", "observed+intention"),
                               help="text embedded for the textual similarity of example selection (reconstruction)")
    use_mmr: bool = option(False, help="diversify the examples with maximal marginal relevance (PALM)")
    mmr_lambda: float = option(0.5, help="MMR trade-off mu: mu*relevance - (1-mu)*max similarity to chosen ones")
    mmr_pool: int = option(4, help="MMR picks from the num_examples x mmr_pool best candidates")
    text_embedder: str = option("minilm", choices=("minilm", "bag_of_words"),
                                help="sentence embedder for example selection: the packaged all-MiniLM-L6-v2, or a "
                                     "hashed bag of words (deterministic, no model; tests and tiny runs)")
    num_sequences: int = option(5, help="K candidate sequences (Ego4D LTA: 5)")
    num_future: int = option(20, help="Z future actions (Ego4D LTA: 20)")
    temperature: float = option(0.6, help="sampling temperature of the K sequences (reconstruction; AntGPT ICL "
                                          "uses 0.2-0.3, PALM samples with top_p 0.5)")
    top_p: float = option(0.9, help="nucleus sampling (AntGPT Llama-2 ICL: 0.9)")
    top_k: int = option(50, help="top-k sampling (PALM: 50); 0 = off")
    dedupe_retries: int = option(10, help="resample duplicate sequences up to this many rounds (PALM: 10)")
    tokens_per_action: int = option(6, help="generation budget: max_new_tokens = Z x this + 8")
    generation_vocab: str = option("actions", choices=("actions", "full"),
                                   help="tokens an answer may use (an inference choice, not the paper's): 'actions' "
                                        "= only the tokens of the verb/noun display texts and synonyms, the "
                                        "separators , ; . newline and EOS; the output layer is evaluated for those "
                                        "rows only, sampling and the scores are renormalised over them (log p "
                                        "given the allowed set). 'full' = the whole vocabulary. generation_backend "
                                        "hf only")
    draft_tokens: int = option(8, help="prompt-lookup speculative sampling (an inference choice, not the paper's; "
                                       "generation_backend hf): up to this many tokens are proposed from the prompt "
                                       "and the answer so far (what followed the latest earlier occurrence of the "
                                       "last 3, 2 or 1 tokens) and verified in one forward; each is accepted with "
                                       "its probability under the sampling distribution and a rejected one is "
                                       "redrawn from the rest, so answers follow exactly the distribution of "
                                       "token-by-token sampling (the same seed draws other answers). 0 = off")
    generation_dtype: str = option("auto", choices=("auto", "float32", "bfloat16"),
                                   help="dtype of the LLM when the Anticipator generates, LoRA merged into the "
                                        "weights (inference only: training and evaluate keep separate adapters and "
                                        "llm_dtype). auto = bfloat16 where the device computes it "
                                        "fast (CUDA with bf16, a CPU with AMX or AVX512-BF16), else the LLM as loaded")
    verb_set_scoring: str = option("frequency", choices=("frequency", "presence"),
                                   help="EK-55/EGTEA verb-set mAP: a verb's score is its share of the K x Z predicted "
                                        "actions (frequency) or of the K sequences that contain it (presence); "
                                        "reconstruction, the paper's rule is not available")
    generation_backend: str = option("hf", choices=("hf", "vllm"),
                                     help="'hf' generates with the soft visual tokens; 'vllm' (GPUs) serves the text "
                                          "prompt with the intention text but WITHOUT soft tokens (vLLM takes no "
                                          "custom input embeddings here), so it is a text-only approximation")


@dataclass
class ICVLDataConfig:
    """Ego4D LTA windows, EK-55/EGTEA (EGO-TOPO) verb-set samples, or a synthetic task; visual features per segment,
    observed actions (recognised, or the ground-truth oracle) and intentions."""

    dataset: str = option("ego4d", choices=("ego4d", "ek55", "egtea", "synthetic", "synthetic_verbset"),
                          help="ego4d: Ego4D LTA (edit distance, N observed -> Z future); ek55 / egtea: EGO-TOPO "
                               "long-term anticipation (observe the first ratio of a video, verb-set mAP All / Freq "
                               "/ Rare); synthetic / synthetic_verbset: the synthetic task under either protocol")
    root: str = option("", help="dataset folder: the Ego4D LTA annotation files (fho_lta_*.json), or the EGO-TOPO "
                                "data folder for ek55/egtea (split/, annotations/)")
    train_file: str = option("fho_lta_train.json", help="training annotations (relative to root); ek55/egtea: the "
                                                        "EGO-TOPO split file, e.g. split/train_S1.csv")
    val_file: str = option("fho_lta_val.json", help="validation annotations (relative to root); ek55/egtea: e.g. "
                                                    "split/val_S1.csv")
    test_file: str = option("", help="test annotations; empty = val_file. Ego4D: fho_lta_test_unannotated.json is "
                                     "scored on EvalAI (mmreason.methods.icvl.write_submission), not by evaluate")
    taxonomy_file: str = option("fho_lta_taxonomy.json", help="Ego4D verb/noun taxonomy (relative to root)")
    verb_classes_file: str = option("", help="ek55: EPIC_verb_classes.csv; egtea: verb_idx.txt (relative to root)")
    noun_classes_file: str = option("", help="ek55: EPIC_noun_classes.csv; egtea: noun_idx.txt (relative to root)")
    many_shot_verbs_file: str = option("", help="ek55/egtea: many-shot verb ids (EPIC_many_shot_verbs.csv / "
                                                "gtea_many_shot_verbs.csv, relative to root) splitting mAP into "
                                                "Freq and Rare; empty = All only")
    train_ratios: list[float] = option(default_factory=lambda: [0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8],
                                       help="ek55/egtea training samples: observed fractions of each video (EGO-TOPO)")
    eval_ratios: list[float] = option(default_factory=lambda: [0.25, 0.5, 0.75],
                                      help="ek55/egtea evaluation samples: observed fractions (EGO-TOPO, AntGPT)")
    fps: float = option(60.0, help="ek55/egtea: frame rate of the split files' frame numbers (EK-55 60, EGTEA 24), "
                                   "for the intention clips' end times")
    features_dir: str = option("", help="folder of '<clip_uid>.npy' (ek55/egtea: '<video_id>.npy') visual features, "
                                        "one row per annotated segment of the clip (index = action_idx; ek55/egtea: "
                                        "the segment's position in start order): [A, D] or [A, T, D] (averaged)")
    encoder: str = option("openclip:ViT-L-14-quickgelu:openai",
                          help="frame encoder of the visual features, as `mmreason extract --encoder` names it "
                               "(openclip:<arch>[:<pretrained tag or checkpoint file>], or pixels:<dim>, the "
                               "weight-free test encoder); the Anticipator encodes video with it. Default: CLIP "
                               "ViT-L/14 image embeddings, 768-d, as AntGPT (reconstruction for ICVL)")
    num_observed: int = option(8, help="observed actions N (AntGPT/ICVL: 8); ek55/egtea show the N most recent "
                                       "observed segments (fewer when fewer are observed, at least 3)")
    observed_source: str = option("predictions", choices=("predictions", "ground_truth"),
                                  help="observed action labels of the evaluation splits (prompt, example retrieval, "
                                       "intention prompt): 'predictions' = a recogniser's output (the benchmark "
                                       "protocol, AntGPT); 'ground_truth' = the annotations, an ORACLE setting that "
                                       "evaluate labels as such. Training always uses the annotations")
    val_observed_file: str = option("", help="observed_source=predictions: recognised actions of the val split "
                                             "(JSON keyed '<clip_uid>_<action_idx>', see read_recognized_actions; "
                                             "relative to root)")
    test_observed_file: str = option("", help="observed_source=predictions: recognised actions of the test split "
                                              "(relative to root)")
    intentions: str = option("asset", choices=("asset", "generate", "none"),
                             help="intention text per clip: from the curated asset knowledge/<intention_dataset>/"
                                  "intentions.jsonl, generated on the fly through the cached asset engine, or none")
    intention_dataset: str = option("ego4d_lta", help="asset dataset name holding the intentions")
    knowledge_root: str = option("", help="root of the curated assets; empty = $MMREASON_KNOWLEDGE, else the checkout's "
                                 "knowledge/ (mmreason.assets.paths)")
    video_dir: str = option("", help="intentions=generate: folder of '<clip_uid>.mp4' videos shown to the VLM")
    intention_backend: str = option("hf", help="backend of on-the-fly intentions (hf, vllm on GPUs, replay, ...)")
    intention_model: str = option(DEFAULT_INTENTION_VLM,
                                  help="VLM of the intentions: an image-text-to-text model id or folder (the paper "
                                       "names none). A text-only model (e.g. 'embedded', the packaged Gemma) sees no "
                                       "frames: it is announced once and recorded as intention_source: text_only")
    intention_frames: int = option(8, help="frames shown to the intention VLM, uniform over the observed span")
    llm_cache_dir: str = option("", help="response cache of the intention generations; empty = "
                                "$MMREASON_CACHE/llm_responses")
    max_windows: int = option(0, help="use at most this many windows per split (0 = all)")
    # synthetic tasks
    num_verbs: int = option(6, help="synthetic: verb classes")
    num_nouns: int = option(6, help="synthetic: noun classes")
    num_goals: int = option(4, help="synthetic: goals; each goal fixes the order of the actions (the sequence rule)")
    num_clips: int = option(96, help="synthetic: training clips (val/test get a quarter each)")
    noise: float = option(0.3, help="synthetic: std of the feature noise around each action prototype")
    goal_cue: str = option("all", choices=("all", "visual", "intention"),
                           help="synthetic: what reveals the goal. all: the observed actions, their visual features "
                                "and the intention; visual: only a per-goal offset of the visual features; "
                                "intention: only the intention text (ablation tests)")
    segments_per_video: int = option(20, help="synthetic_verbset: annotated segments per video")
    seed: int = option(0, help="synthetic: seed of the rule, the prototypes and the clips")
    eval_batch_size: int = option(8, help="prompts generated together at evaluation")


@dataclass
class ICVLExperiment:
    """ICVL (arXiv 2505.01713): VLM intentions + visual tokens + in-context examples -> LLM long-term anticipation."""

    model: ICVLConfig = option(default_factory=ICVLConfig, help="fusion, projector, LLM, prompt and sampling")
    data: ICVLDataConfig = option(default_factory=ICVLDataConfig, help="windows, features and intentions")
    train: TrainConfig = option(
        default_factory=lambda: TrainConfig(optimizer="adamw", lr=3e-4, epochs=3, batch_size=12, weight_decay=0.0,
                                            warmup_steps=0, grad_clip=1.0),
        help="optimisation: AntGPT's LoRA fine-tuning (lr 3e-4, 3 epochs, batch 12); ICVL's own values are not "
             "available (reconstruction)")
