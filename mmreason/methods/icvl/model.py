"""ICVL: "Vision and Intention Boost Large Language Model in Long-Term Action Anticipation" (Cao, Hu, Yu, Zhang;
arXiv 2505.01713, 2025).

What the abstract states (specs/anticipation_tal.md §2.1) and where it lives here:
    1. intention inference: a VLM writes the actor's behavioural intention as text
       (``mmreason.assets.intentions`` through the cached asset engine; ``data.py``);
    2. multi-modality fusion: intention text features are fused into the visual features, giving
       intention-enhanced visual representations (:class:`IntentionFusion`);
    3. anticipation: the enhanced visual representations and a text prompt go into an LLM that predicts the
       future actions (:class:`ICVL`: projector -> soft visual tokens spliced into the prompt; LoRA-tuned LLM);
    4. example selection: in-context examples chosen by visual and textual similarity jointly (``examples.py``).

Everything below the abstract's level is a reconstruction (spec §2.3), each a config field of ``ICVLConfig``:
    * fusion (``fusion_*``): pre-norm cross-attention with the visual tokens as queries and the intention tokens as
      keys/values, added residually, then a residual FFN, then a LayerNorm-free output (pre-norm placement):
          V1 = V + W_o · MHA(LN(V) W_q, LN(T) W_k, LN(T) W_v),    V' = V1 + FFN(LN(V1))
      ``fusion_zero_init`` zero-initialises W_o and the FFN's output layer, so at initialisation V' = V exactly;
    * intention tokens T: the frozen LLM's input embeddings of the intention text (``max_intention_tokens``);
    * projector (``projector``): LLaVA-1.5 two-layer GELU MLP (or linear) from the visual width to the LLM width;
      one soft token per observed segment, replacing ``visual_placeholder`` in the prompt;
    * LLM and LoRA: AntGPT's settings (r = 8, alpha = 32, dropout 0.05, q_proj/v_proj), trained with next-token
      cross-entropy on the answer tokens only; the LLM's own weights stay frozen;
    * decoding: K sequences by temperature/top-p/top-k sampling, duplicates (after mapping onto the vocabulary)
      resampled up to ``dedupe_retries`` rounds as PALM does; text mapped with ``map_sequence`` (AntGPT's
      post-processing: exact, then fuzzy, pad by repeating the last action, truncate to Z).
"""
from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mmreason.data.anticipation import ActionVocab, map_sequence

IGNORE = -100
PROMPT_WORDS = ("### Example Query Observed actions Prediction Intention Video : , . the person intends to make "
                "a an and then of with in on")


# ================================================================================================ fusion

class IntentionFusion(nn.Module):
    """Intention-enhanced visual tokens: ``V [B, N, Dv]``, ``T [B, L, Dt]`` (+ padding mask) -> ``[B, N, Dv]``."""

    def __init__(self, visual_dim: int, text_dim: int, dim: int, heads: int, ffn_mult: int, zero_init: bool = True):
        super().__init__()
        if dim % heads:
            raise ValueError(f"model.fusion_dim ({dim}) must be divisible by model.fusion_heads ({heads})")
        self.heads = heads
        self.norm_v, self.norm_t = nn.LayerNorm(visual_dim), nn.LayerNorm(text_dim)
        self.q, self.k, self.v = nn.Linear(visual_dim, dim), nn.Linear(text_dim, dim), nn.Linear(text_dim, dim)
        self.out = nn.Linear(dim, visual_dim)
        self.norm_ffn = nn.LayerNorm(visual_dim)
        self.ffn = nn.Sequential(nn.Linear(visual_dim, dim * ffn_mult), nn.GELU(), nn.Linear(dim * ffn_mult, visual_dim))
        if zero_init:  # the block starts as the identity: V' = V
            for layer in (self.out, self.ffn[-1]):
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)

    def cross_attention(self, visual: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor | None) -> torch.Tensor:
        """``W_o · MHA(LN(V) W_q, LN(T) W_k, LN(T) W_v)``: ``[B, N, Dv]``; ``text_mask [B, L]`` True = real token."""
        b, n, _ = visual.shape
        t = self.norm_t(text)

        def heads(x):  # [B, S, F] -> [B, h, S, F/h]
            return x.view(b, x.shape[1], self.heads, -1).transpose(1, 2)

        mask = None if text_mask is None else text_mask[:, None, None, :]   # [B, 1, 1, L]
        attended = F.scaled_dot_product_attention(heads(self.q(self.norm_v(visual))), heads(self.k(t)),
                                                  heads(self.v(t)), attn_mask=mask)   # [B, h, N, F/h]
        return self.out(attended.transpose(1, 2).reshape(b, n, -1))

    def forward(self, visual: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor | None = None) -> torch.Tensor:
        fused = visual + self.cross_attention(visual, text, text_mask)     # [B, N, Dv]
        return fused + self.ffn(self.norm_ffn(fused))


def build_projector(kind: str, visual_dim: int, hidden: int) -> nn.Module:
    if kind == "linear":
        return nn.Linear(visual_dim, hidden)
    return nn.Sequential(nn.Linear(visual_dim, hidden), nn.GELU(), nn.Linear(hidden, hidden))


# ================================================================================================ the LLM

def tiny_tokenizer(texts: Sequence[str]):
    """A lower-cased word-level tokenizer over the words of ``texts`` (built offline; unknown words -> <unk>)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<s>", "</s>", "<unk>"]
    words = sorted({w for t in texts for w in re.findall(r"\w+|[^\w\s]", t.lower())})
    vocab = {w: i for i, w in enumerate(specials + [w for w in words if w not in specials])}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.normalizer = normalizers.Lowercase()
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tk.decoder = decoders.WordPiece(prefix="##")   # joins words with spaces
    tk.add_special_tokens(specials)
    from tokenizers.processors import TemplateProcessing

    tk.post_processor = TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>")


def load_llm(cfg, vocab: ActionVocab, extra_words: Sequence[str] = ()):
    """``(causal LM, tokenizer)`` for ``model.llm``: ``embedded``, ``tiny`` or a transformers id/folder."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if cfg.llm == "tiny":
        from transformers import LlamaConfig, LlamaForCausalLM

        texts = [PROMPT_WORDS, cfg.instruction, *vocab.verbs.display, *vocab.nouns.display, *extra_words]
        tokenizer = tiny_tokenizer(texts)
        config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=cfg.tiny_hidden, intermediate_size=2 * cfg.tiny_hidden,
                             num_hidden_layers=cfg.tiny_layers, num_attention_heads=4, num_key_value_heads=4,
                             max_position_embeddings=4096, pad_token_id=0, bos_token_id=1, eos_token_id=2,
                             tie_word_embeddings=True, initializer_range=cfg.tiny_init_std)
        with _seeded(cfg.tiny_seed):
            model = LlamaForCausalLM(config)
        return model, tokenizer
    source = cfg.llm
    if source == "embedded":
        from mmreason.llm.embedded import embedded_llm_path

        source = str(embedded_llm_path())
    dtype = {"auto": "auto", "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[cfg.llm_dtype]
    if dtype == "auto":
        dtype = (torch.bfloat16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else torch.float32)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype)
    except (OSError, ValueError) as e:
        raise OSError(f"cannot load the LLM model.llm={cfg.llm!r}: {e}") from e
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


@contextlib.contextmanager
def _seeded(seed: int):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def add_lora(model: nn.Module, cfg) -> nn.Module:
    """Freeze ``model`` and wrap it with LoRA on ``cfg.lora_targets``; a target no module carries is an error."""
    from peft import LoraConfig, get_peft_model

    # leaf modules with a 2-d weight: nn.Linear and look-alikes such as GPT-2's Conv1D
    linear_names = {name.rsplit(".", 1)[-1] for name, mod in model.named_modules()
                    if not list(mod.children()) and getattr(getattr(mod, "weight", None), "ndim", 0) == 2
                    and not isinstance(mod, nn.Embedding)}
    missing = [t for t in cfg.lora_targets if t not in linear_names]
    if missing:
        raise ValueError(f"LoRA target modules {missing} are not in {type(model).__name__} (model.lora_targets); "
                         f"its linear layers are named {sorted(linear_names)}")
    for p in model.parameters():
        p.requires_grad_(False)
    lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=list(cfg.lora_targets), task_type="CAUSAL_LM")
    return get_peft_model(model, lora)


# ================================================================================================ the model

@dataclass
class Candidate:
    """One predicted sequence: Z (verb, noun) ids, its mean token log-probability and the raw text."""

    pairs: list[tuple[int, int]]
    score: float
    text: str
    num_mapped: int


class ICVL(nn.Module):
    """Intention fusion + projector + LoRA-tuned causal LM over prompts with soft visual tokens."""

    def __init__(self, cfg, vocab: ActionVocab, extra_words: Sequence[str] = ()):
        super().__init__()
        self.cfg, self.vocab = cfg, vocab
        llm, self.tokenizer = load_llm(cfg, vocab, extra_words)
        self.hidden = llm.get_input_embeddings().embedding_dim
        self.llm = add_lora(llm, cfg)
        self.fusion = IntentionFusion(cfg.visual_dim, self.hidden, cfg.fusion_dim, cfg.fusion_heads,
                                      cfg.fusion_ffn_mult, cfg.fusion_zero_init)
        self.projector = build_projector(cfg.projector, cfg.visual_dim, self.hidden)
        self.eos_id = self.tokenizer.eos_token_id
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.eos_id

    @property
    def device(self) -> torch.device:
        return next(self.projector.parameters()).device

    # ------------------------------------------------------------------------------------------ inputs
    def _ids(self, text: str, special: bool = False) -> list[int]:
        return self.tokenizer(text, add_special_tokens=special).input_ids

    def _embed(self, ids: list[int]) -> torch.Tensor:
        table = self.llm.get_input_embeddings()
        return table(torch.tensor(ids, dtype=torch.long, device=self.device))   # [L, H] (Gemma scales inside)

    def intention_tokens(self, intentions: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Frozen LLM input embeddings of each intention ``[B, L, H]`` and the mask of real tokens ``[B, L]``."""
        ids = [self._ids(t, special=True)[: self.cfg.max_intention_tokens] or [self.eos_id] for t in intentions]
        length = max(len(i) for i in ids)
        tokens = torch.zeros(len(ids), length, self.hidden, device=self.device)
        mask = torch.zeros(len(ids), length, dtype=torch.bool, device=self.device)
        with torch.no_grad():
            for b, row in enumerate(ids):
                tokens[b, : len(row)] = self._embed(row).float()
                mask[b, : len(row)] = True
        return tokens, mask

    def visual_tokens(self, visual: torch.Tensor, intentions: Sequence[str]) -> torch.Tensor:
        """Soft visual tokens ``[B, N, H]``: fuse the intention into the visual tokens, project to the LLM width."""
        text, mask = self.intention_tokens(intentions)
        fused = self.fusion(visual.to(self.device, torch.float32), text, mask)   # [B, N, Dv]
        return self.projector(fused)

    def _sequence(self, prompt: str, soft: torch.Tensor, target: str | None) -> tuple[torch.Tensor, list[int]]:
        """One row's input embeddings ``[L, H]`` and labels (IGNORE everywhere but the answer tokens)."""
        placeholder = self.cfg.visual_placeholder
        if prompt.count(placeholder) != 1:
            raise ValueError(f"the prompt must hold the visual placeholder {placeholder!r} exactly once")
        before, after = prompt.split(placeholder)
        pre, post = self._ids(before, special=True), self._ids(after)
        answer = self._ids(target) + [self.eos_id] if target is not None else []
        dtype = self.llm.get_input_embeddings().weight.dtype
        parts = [self._embed(pre), soft.to(dtype), self._embed(post)] + ([self._embed(answer)] if answer else [])
        labels = [IGNORE] * (len(pre) + len(soft) + len(post)) + answer
        return torch.cat(parts), labels

    def _batch(self, prompts, soft, targets=None, left_pad=False):
        rows = [self._sequence(p, s, t) for p, s, t in zip(prompts, soft, targets or [None] * len(prompts))]
        length = max(len(lab) for _, lab in rows)
        pad = self._embed([self.pad_id])[0]
        embeds, masks, labels = [], [], []
        for emb, lab in rows:
            n = length - len(lab)
            filler = pad.expand(n, -1)
            embeds.append(torch.cat([filler, emb]) if left_pad else torch.cat([emb, filler]))
            ones, zeros = [1] * len(lab), [0] * n
            masks.append(zeros + ones if left_pad else ones + zeros)
            labels.append([IGNORE] * n + lab if left_pad else lab + [IGNORE] * n)
        tensor = lambda x: torch.tensor(x, dtype=torch.long, device=self.device)   # noqa: E731
        return torch.stack(embeds), tensor(masks), tensor(labels)

    # ------------------------------------------------------------------------------------------ training
    def loss(self, batch: dict) -> dict:
        """Next-token cross-entropy on the answer tokens only."""
        soft = self.visual_tokens(batch["visual"], batch["intention"])
        embeds, mask, labels = self._batch(batch["prompt"], soft, batch["target"])
        out = self.llm(inputs_embeds=embeds, attention_mask=mask, labels=labels)
        return {"loss": out.loss}

    def forward(self, batch: dict) -> dict:
        return self.loss(batch)

    # ------------------------------------------------------------------------------------------ generation
    @torch.no_grad()
    def _sample(self, embeds, mask, n: int, seed: int, z: int) -> tuple[list[str], list[float]]:
        c = self.cfg
        max_new = z * c.tokens_per_action + 8
        with _seeded(seed):
            out = self.llm.generate(inputs_embeds=embeds, attention_mask=mask, max_new_tokens=max_new,
                                    do_sample=c.temperature > 0, temperature=c.temperature or None,
                                    top_p=c.top_p, top_k=c.top_k or None, num_return_sequences=n,
                                    pad_token_id=self.pad_id, eos_token_id=self.eos_id,
                                    return_dict_in_generate=True, output_scores=True)
        logp = self.llm.compute_transition_scores(out.sequences, out.scores, normalize_logits=True)   # [B*n, T]
        texts, scores = [], []
        for seq, lp in zip(out.sequences.tolist(), logp):
            end = seq.index(self.eos_id) + 1 if self.eos_id in seq else len(seq)
            texts.append(self.tokenizer.decode(seq[:end], skip_special_tokens=True))
            finite = lp[:end][torch.isfinite(lp[:end])]
            scores.append(float(finite.mean()) if len(finite) else float("-inf"))
        return texts, scores

    def _sample_vllm(self, prompts: Sequence[str], n: int, seed: int, round_: int, z: int) -> tuple[list[str], list[float]]:
        """vLLM path (GPUs): the text prompt with the intention but WITHOUT soft visual tokens (the placeholder line is
        dropped) and without the LoRA weights, served by ``mmreason.llm``'s vLLM backend; scores are 0 (no logprobs).
        A text-only approximation of ICVL for fast large-scale generation, not the trained model."""
        from mmreason.llm import Request, SamplingParams, make_backend

        if getattr(self, "_vllm", None) is None:
            self._vllm = make_backend("vllm", model=self.cfg.llm)
        c = self.cfg
        line = re.compile(r"^.*" + re.escape(c.visual_placeholder) + r".*\n?", re.MULTILINE)
        sampling = SamplingParams(temperature=c.temperature, top_p=c.top_p, top_k=c.top_k,
                                  max_tokens=z * c.tokens_per_action + 8, seed=seed)
        requests = [Request(prompt=line.sub("", p), sampling=sampling, sample_index=round_ * n + j, tag=f"icvl{i}")
                    for i, p in enumerate(prompts) for j in range(n)]
        return [g.text for g in self._vllm.generate(requests)], [0.0] * len(requests)

    @torch.no_grad()
    def anticipate(self, visual: torch.Tensor, prompts: Sequence[str], intentions: Sequence[str], k: int | None = None,
                   z: int | None = None, seed: int = 0) -> list[list[Candidate]]:
        """``K`` distinct candidate sequences of ``Z`` actions per prompt, best mean log-probability first."""
        k = k or self.cfg.num_sequences
        z = z or self.cfg.num_future
        was_training = self.training
        self.eval()
        on_vllm = self.cfg.generation_backend == "vllm"
        if not on_vllm:
            soft = self.visual_tokens(visual, intentions)
            embeds, mask, _ = self._batch(prompts, soft, left_pad=True)
        found: list[dict] = [{} for _ in prompts]
        need = list(range(len(prompts)))
        for round_ in range(self.cfg.dedupe_retries + 1):
            if not need:
                break
            if on_vllm:
                texts, scores = self._sample_vllm([prompts[i] for i in need], k, seed, round_, z)
            else:
                texts, scores = self._sample(embeds[need], mask[need], k, seed + 7919 * round_, z)
            for j, row in enumerate(need):
                for text, score in zip(texts[j * k:(j + 1) * k], scores[j * k:(j + 1) * k]):
                    mapped = map_sequence(text, self.vocab, z)
                    key = tuple(mapped.pairs)
                    # an answer with no mappable action is no candidate: sample again
                    if mapped.num_mapped and key not in found[row] and len(found[row]) < k:
                        found[row][key] = Candidate(mapped.pairs, score, text, mapped.num_mapped)
            need = [row for row in need if len(found[row]) < k]
        self.train(was_training)
        out = []
        for row in found:
            cands = sorted(row.values(), key=lambda c: -c.score)
            while len(cands) < k:   # still short after the retry cap: repeat the best ones (nothing mapped: (0, 0))
                cands.append(cands[len(cands) % max(len(row), 1)] if cands else Candidate([(0, 0)] * z, float("-inf"), "", 0))
            out.append(cands[:k])
        return out
