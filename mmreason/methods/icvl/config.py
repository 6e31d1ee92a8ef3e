"""ICVL experiment config (arXiv 2505.01713).

Only the abstract of the paper could be read (specs/anticipation_tal.md §2.1-2.2), so every field below that is
marked *reconstruction* is a choice of this implementation (spec §2.3), not the paper's. Evaluation follows the
Ego4D LTA protocol exactly (spec §1.1: N = 8 observed, Z = 20 future, K = 5 sequences, edit distance).
"""
from __future__ import annotations

from dataclasses import dataclass

from mmreason.config import option
from mmreason.engine.config import TrainConfig

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
    generation_backend: str = option("hf", choices=("hf", "vllm"),
                                     help="'hf' generates with the soft visual tokens; 'vllm' (GPUs) serves the text "
                                          "prompt with the intention text but WITHOUT soft tokens (vLLM takes no "
                                          "custom input embeddings here), so it is a text-only approximation")


@dataclass
class ICVLDataConfig:
    """Ego4D LTA windows with per-segment visual features and intentions, or a synthetic task."""

    dataset: str = option("ego4d", choices=("ego4d", "synthetic"), help="Ego4D LTA or the synthetic sequence task")
    root: str = option("", help="Ego4D folder with the LTA annotation files (fho_lta_*.json)")
    train_file: str = option("fho_lta_train.json", help="training annotations (relative to root)")
    val_file: str = option("fho_lta_val.json", help="validation annotations (relative to root)")
    test_file: str = option("", help="annotated test file; empty = val_file (the official test is scored on EvalAI)")
    taxonomy_file: str = option("fho_lta_taxonomy.json", help="verb/noun taxonomy (relative to root)")
    features_dir: str = option("", help="folder of '<clip_uid>.npy' visual features, one row per annotated action "
                                        "of the clip (index = action_idx): [A, D] or [A, T, D] (frames averaged)")
    num_observed: int = option(8, help="observed actions N (AntGPT/ICVL: 8)")
    intentions: str = option("asset", choices=("asset", "generate", "none"),
                             help="intention text per clip: from the curated asset knowledge/<intention_dataset>/"
                                  "intentions.jsonl, generated on the fly through the cached asset engine, or none")
    intention_dataset: str = option("ego4d_lta", help="asset dataset name holding the intentions")
    knowledge_root: str = option("knowledge", help="root of the curated assets")
    video_dir: str = option("", help="intentions=generate: folder of '<clip_uid>.mp4' videos shown to the VLM")
    intention_backend: str = option("hf", help="backend of on-the-fly intentions (hf, vllm, replay, ...)")
    intention_model: str = option("embedded", help="VLM of the intentions (a text-only model sees no frames: the "
                                                   "intention then comes from the observed actions alone)")
    llm_cache_dir: str = option("knowledge/.llm_cache", help="response cache of the intention generations")
    max_windows: int = option(0, help="use at most this many windows per split (0 = all)")
    # synthetic task
    num_verbs: int = option(6, help="synthetic: verb classes")
    num_nouns: int = option(6, help="synthetic: noun classes")
    num_goals: int = option(4, help="synthetic: goals; each goal fixes the order of the actions (the sequence rule)")
    num_clips: int = option(96, help="synthetic: training clips (val/test get a quarter each)")
    noise: float = option(0.3, help="synthetic: std of the feature noise around each action prototype")
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
