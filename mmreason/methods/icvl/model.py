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
      ``fusion = False`` skips the block (the ablation of step 2); ``intention_in_prompt`` also writes the intention
      into the text prompt (False: it reaches the LLM through the fused visual tokens only);
    * intention tokens T: the frozen LLM's input embeddings of the intention text (``max_intention_tokens``);
    * projector (``projector``): LLaVA-1.5 two-layer GELU MLP (or linear) from the visual width to the LLM width;
      one soft token per observed segment, replacing ``visual_placeholder`` in the prompt;
    * LLM and LoRA: AntGPT's settings (r = 8, alpha = 32, dropout 0.05, q_proj/v_proj), trained with next-token
      cross-entropy on the answer tokens only; the LLM's own weights stay frozen;
    * decoding: K sequences by temperature/top-p/top-k sampling, duplicates (after mapping onto the vocabulary)
      resampled up to ``dedupe_retries`` rounds as PALM does; text mapped with ``map_sequence`` (AntGPT's
      post-processing: exact, then fuzzy, pad by repeating the last action, truncate to Z).
Inference choices that are not the paper's (speed; README "Generation"): ``generation_vocab=actions`` samples over
the answer tokens only (the vocabulary's words and the separators; scores renormalised over them);
``draft_tokens`` verifies prompt-lookup drafts by speculative sampling (Leviathan et al., arXiv 2211.17192; the
answers keep exactly the distribution of token-by-token sampling); and the Anticipator merges LoRA into the weights
and generates in ``generation_dtype`` (bfloat16 where the CPU/GPU runs it fast).
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

    def visual_tokens(self, visual: torch.Tensor | Sequence[torch.Tensor],
                      intentions: Sequence[str]) -> torch.Tensor | list[torch.Tensor]:
        """Soft visual tokens: fuse the intention into the visual tokens, project to the LLM width.

        ``visual [B, N, Dv]`` -> ``[B, N, H]``; a list of ``[n_b, Dv]`` (EK-55/EGTEA samples observe different
        numbers of segments) -> a list of ``[n_b, H]``. Padding rows are harmless: a visual token attends only to
        the intention tokens, never to other visual tokens, and the padded rows are dropped."""
        text, mask = self.intention_tokens(intentions)

        def fuse(v: torch.Tensor) -> torch.Tensor:   # [B, N, Dv]; model.fusion=False is the ablation
            return self.fusion(v, text, mask) if self.cfg.fusion else v

        if isinstance(visual, torch.Tensor):
            return self.projector(fuse(visual.to(self.device, torch.float32)))                     # [B, N, H]
        lengths = [len(v) for v in visual]
        padded = torch.zeros(len(visual), max(lengths), self.cfg.visual_dim, device=self.device)   # [B, N_max, Dv]
        for b, v in enumerate(visual):
            padded[b, :len(v)] = torch.as_tensor(v).to(self.device, torch.float32)
        soft = self.projector(fuse(padded))                                                        # [B, N_max, H]
        return [soft[b, :n] for b, n in enumerate(lengths)]

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
    # One batched sampler: the prompts are prefilled once (their KV cache is shared by all samples of a prompt and
    # by every de-duplication pass), then all samples decode together, samples with equal prefixes sharing a batch
    # row. Each step scores only the sampled tokens (log p = logit - logsumexp over the generation vocabulary, never
    # a stored [steps, vocab] score tensor). A sample stops at EOS, at the token budget (Z x tokens_per_action + 8),
    # or as soon as its text maps to Z actions (map_sequence keeps the first Z, so later tokens cannot change it); the
    # candidate is the same as from the full generation, and its score is the mean log-probability of its tokens.
    # model.draft_tokens (an inference choice): each step also verifies tokens looked up in the prompt and answer
    # (speculative sampling, exact in distribution), so a row often advances several tokens per forward.
    # model.generation_vocab=actions (an inference choice, not the paper's): the output layer is evaluated for the
    # tokens answers are made of only (Gemma 3 270M: ~1k of its 262k rows; the full output layer is 168M of its 270M
    # parameters, read at every decoding step), and sampling and scores are renormalised over those tokens.
    def prepare_for_generation(self) -> torch.dtype:
        """Inference only (the Anticipator calls it once, after loading the checkpoint): merge the LoRA weights into
        the frozen ones (W + s B A, computed in the loaded dtype: one matmul per adapted layer and step instead of
        three), then cast the LLM to ``model.generation_dtype`` in place (fusion and projector stay float32).
        Returns the LLM's dtype. Never on a model that trains: training and ``evaluate`` keep separate adapters and
        ``llm_dtype``."""
        if not any(getattr(m, "merged_adapters", None) for m in self.llm.modules()):   # peft's LoRA layers
            self.llm.base_model.merge_adapter()
        dtype = generation_dtype(self.cfg.generation_dtype, self.device)
        if dtype is not None:
            self.llm.to(dtype)
        return self.llm.get_input_embeddings().weight.dtype

    def answer_token_ids(self) -> list[int]:
        """The token ids an answer can need (``model.generation_vocab=actions``), sorted: the tokens of every verb's
        and noun's display text and synonym as answers write them (at the start, after a space, before a
        separator), the separators the mapper splits phrases on (``, ; .`` and newline) and EOS. Computed once."""
        if "_answer_ids" not in self.__dict__:
            forms = sorted({f for part in (self.vocab.verbs, self.vocab.nouns)
                            for display, synonyms in zip(part.display, part.synonyms) for f in (display, *synonyms)})
            texts = [t for f in forms for t in (f, f" {f}", f" {f},", f" {f};", f" {f}.", f" {f}\n")]
            ids = {i for row in self.tokenizer(texts + [",", ";", ".", "\n", ", ", ",\n"],
                                               add_special_tokens=False).input_ids for i in row}
            ids.discard(self.tokenizer.unk_token_id)
            self.__dict__["_answer_ids"] = sorted(ids | {self.eos_id})
        return self.__dict__["_answer_ids"]

    def _output_head(self) -> tuple[nn.Module | None, torch.Tensor | None]:
        """The output layer of generation: ``(None, None)`` = the LLM's own (``generation_vocab=full``); else a linear
        layer with only the rows of :meth:`answer_token_ids` (``[A, H]``, a copy made once and rebuilt when the
        LLM's weights move or change dtype) and those token ids ``[A]`` (row -> token id)."""
        if self.cfg.generation_vocab == "full":
            return None, None
        full = self.llm.get_base_model().get_output_embeddings()
        key = (full.weight.data_ptr(), full.weight.dtype, full.weight.device)
        if self.__dict__.get("_head", (None,))[0] != key:
            ids = torch.tensor(self.answer_token_ids(), device=full.weight.device)
            head = nn.Linear(full.weight.shape[1], len(ids), bias=getattr(full, "bias", None) is not None)
            head.weight = nn.Parameter(full.weight.detach()[ids].clone(), requires_grad=False)     # [A, H]
            if head.bias is not None:
                head.bias = nn.Parameter(full.bias.detach()[ids].clone(), requires_grad=False)
            self.__dict__["_head"] = (key, head, ids)                                            # not a submodule
        return self.__dict__["_head"][1:]

    def _next_logits(self, keep: int = 1, **inputs) -> tuple[torch.Tensor, object]:
        """One forward of the LLM (``inputs``: embeddings or token ids, mask, positions, cache): the next-token
        logits at the last ``keep`` positions over the generation vocabulary ``[B, keep, A]`` (float32; A = V for
        ``generation_vocab=full``) and the KV cache. The model's own forward runs, so its final norm, logit
        soft-capping (Gemma 2) or scaling stay as they are; for ``generation_vocab=actions`` only its output layer is
        swapped for the answer rows during the call."""
        head, _ = self._output_head()
        base = self.llm.get_base_model()
        full = base.get_output_embeddings()
        if head is not None:
            base.set_output_embeddings(head)
        try:
            out = self.llm(use_cache=True, logits_to_keep=keep, **inputs)
        finally:
            if head is not None:
                base.set_output_embeddings(full)
        return out.logits[:, -keep:].float(), _kv_cache(out)

    @torch.inference_mode()
    def _prefill(self, embeds: torch.Tensor, mask: torch.Tensor, context: Sequence[list[int]] = ()) -> "_Prefix":
        """Run the left-padded prompts ``embeds [B, L, H]`` once; keep their KV cache and last logits ``[B, A]``.
        ``context``: each prompt's token ids, where draft tokens are looked up (``model.draft_tokens``). The cache
        keeps every position of every layer (a sliding-window layer's window is applied by its attention mask, as
        the model's own cache does), so the sampler can re-gather rows position by position."""
        from transformers import DynamicCache

        positions = (mask.cumsum(-1) - 1).clamp(min=0)                       # [B, L]: left padding shifts nothing
        logits, cache = self._next_logits(inputs_embeds=embeds, attention_mask=mask, position_ids=positions,
                                          **{self._cache_kwarg(): DynamicCache()})
        return _Prefix(cache, logits[:, -1], mask, [list(c) for c in context])

    def _warped(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The sampling distribution of ``logits [..., V]``: temperature, top-k then top-p (HF's order). Returns its
        support, most probable first: unnormalised probabilities ``[..., k]`` (zero past the top-p head) and their
        indices into ``V`` ``[..., k]``. Temperature 0: the argmax alone."""
        c = self.cfg
        if c.temperature <= 0:
            ids = logits.argmax(-1, keepdim=True)
            return torch.ones_like(ids, dtype=logits.dtype), ids
        x = logits / c.temperature
        if c.top_k > 0:
            vals, ids = x.topk(min(c.top_k, x.shape[-1]), dim=-1)            # sorted descending
        else:
            vals, ids = x.sort(dim=-1, descending=True)
        probs = vals.softmax(-1)
        if c.top_p < 1.0:   # the smallest head whose mass reaches top_p (the first token is always kept)
            probs = probs * ((probs.cumsum(-1) - probs) < c.top_p)
        return probs, ids

    def _draw(self, logits: torch.Tensor, owner: torch.Tensor, uniform: torch.Tensor,
              exclude: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One token per sample from its batch row's ``logits [P, V]`` (``owner [S]``: the row of each sample), by
        temperature, top-k then top-p (HF's order), inverting the CDF at ``uniform [S]``; ``exclude [S]`` (-1: none)
        is a token a sample must not draw (a rejected draft: the rest renormalised). Returns the tokens ``[S]``
        (indices into ``V``, the generation vocabulary's rows) and their log-probability under the model itself
        (temperature 1, before top-k/top-p; over those V tokens) ``[S]``: one logsumexp per row, no stored score
        tensor."""
        probs, ids = self._warped(logits)
        probs, ids = probs[owner], ids[owner]                               # [S, k]
        if exclude is not None:
            probs = probs * (ids != exclude[:, None])
        cdf = probs.cumsum(-1)
        choice = torch.searchsorted(cdf, (uniform * cdf[:, -1])[:, None], right=True).clamp(max=cdf.shape[1] - 1)
        tokens = ids.gather(-1, choice)[:, 0]
        return tokens, logits[owner, tokens] - torch.logsumexp(logits, -1)[owner]

    def _cache_kwarg(self) -> str:
        """The KV-cache argument of the LLM's forward: ``cache`` (transformers >= 5.x) or ``past_key_values``."""
        if "_kv_arg" not in self.__dict__:
            import inspect

            params = inspect.signature(type(self.llm.get_base_model()).forward).parameters
            self.__dict__["_kv_arg"] = "cache" if "cache" in params else "past_key_values"
        return self.__dict__["_kv_arg"]

    def _holds_z_actions(self, tokens: list[int], last: int, z: int) -> bool:
        """Whether an answer already maps to Z actions, checked when its last token ends a phrase (a comma,
        semicolon or newline: the phrases before it are final). ``map_sequence`` keeps the first Z mapped actions,
        so tokens after this point could not change the candidate."""
        pieces = self.__dict__.setdefault("_pieces", {})                   # token id -> its text, decoded once
        if last not in pieces:
            pieces[last] = self.tokenizer.decode([last], skip_special_tokens=True)
        if not any(ch in pieces[last] for ch in ",;\n"):
            return False
        return map_sequence(self.tokenizer.decode(tokens, skip_special_tokens=True), self.vocab, z).num_mapped >= z

    def _prompt_ids(self, prompt: str) -> list[int]:
        """A prompt's text token ids (the visual placeholder dropped): where draft tokens are looked up."""
        before, after = prompt.split(self.cfg.visual_placeholder)
        return self._ids(before, special=True) + self._ids(after)

    @torch.inference_mode()
    def _sample(self, rows: Sequence[int], prefix: "_Prefix", n: int, generators: Sequence[torch.Generator],
                z: int) -> tuple[list[str], list[float]]:
        """``n`` answers for each prompt in ``rows`` (indices into ``prefix``): texts and mean token log-probabilities,
        ``n`` per prompt in order; ``generators[row]`` is the random stream of prompt ``row``.

        All samples decode in one batch that starts from the prompts' KV cache. Samples that have drawn the same
        tokens so far share one batch row (one KV-cache row); a row splits when its samples draw different tokens.
        That is exactly ``n`` independent samples per prompt, at the cost of the distinct prefixes only (a model
        that is sure of its answer decodes it once, not ``n`` times).

        Speculative sampling with prompt-lookup drafts (``model.draft_tokens`` > 0; Leviathan et al. 2023, draft
        q = one looked-up token): each step feeds a row its last drawn token and up to ``draft_tokens`` draft tokens
        (:func:`_lookup_draft` over its prompt and answer) and gets the logits after each in one forward
        ``[R, 1 + D, A]``. Each sample walks the drafts: draft ``t`` is accepted with probability ``p(t)`` under the
        sampling distribution; at the first rejection the token is drawn from ``p`` without ``t``, renormalised
        (= max(p - q, 0)), at the same uniform rescaled to [0, 1); when every draft is accepted, one more token is
        drawn after them. Every token is so distributed exactly as in token-by-token sampling, and its log p is read
        off the same logits. The cache positions of rejected drafts are dropped before the next step (rows
        re-gathered position by position, left-padded), so the cache is that of token-by-token decoding."""
        import copy

        if self.cfg.draft_tokens < 0:
            raise ValueError(f"model.draft_tokens must be >= 0, got {self.cfg.draft_tokens}")
        max_new = z * self.cfg.tokens_per_action + 8
        total = len(rows) * n
        answer_ids = self._output_head()[1]                                 # [A] token ids, None: the full vocabulary
        to_token = answer_ids.tolist() if answer_ids is not None else None  # head row -> token id
        to_row = {t: i for i, t in enumerate(to_token)} if to_token else None
        device = prefix.logits.device
        cache = copy.deepcopy(prefix.cache)
        select = torch.tensor(list(rows), device=device)
        cache.batch_select_indices(select)                                  # [B, ...] -> one row per prompt
        mask, logits = prefix.mask[select], prefix.logits[select][:, None]  # [R, L], [R, J = 1, A]
        position = mask.sum(-1)                                             # [R] position of the next token fed
        contexts = [prefix.context[r] for r in rows] if prefix.context else [[] for _ in rows]
        row_prompt = list(range(len(rows)))                                 # batch row -> prompt (index into rows)
        drafts: list[list[int]] = [[] for _ in rows]                        # batch row -> its draft (head rows)
        fed = 0                                                             # tokens per row fed by the last forward
        tokens: list[list[int]] = [[] for _ in range(total)]
        logps: list[list[float]] = [[] for _ in range(total)]
        owner = [s // n for s in range(total)]                              # sample -> its row of the batch
        active = list(range(total))

        def add(s: int, row: int, logp: float) -> bool:
            """Append a drawn head row to sample ``s``; True when the sample is done."""
            token = row if to_token is None else to_token[row]
            tokens[s].append(token)
            logps[s].append(logp)
            return token == self.eos_id or len(tokens[s]) >= max_new or self._holds_z_actions(tokens[s], token, z)

        while True:
            # ---- each sample walks its row's drafts, then draws one token (no drafts: the plain draw)
            p_draft = lp_draft = [[] for _ in drafts]                       # [R][D]: p(draft) and its model log p
            if logits.shape[1] > 1:
                at_drafts = logits[:, :-1]                                  # [R, D, A]: the logits each draft meets
                probs, ids = self._warped(at_drafts)                        # [R, D, k]
                padded = torch.tensor([d + [-1] * (at_drafts.shape[1] - len(d)) for d in drafts], device=device)
                p_draft = ((probs * (ids == padded[..., None])).sum(-1) / probs.sum(-1)).tolist()
                lp_draft = (at_drafts.gather(-1, padded.clamp(min=0)[..., None])[..., 0]
                            - torch.logsumexp(at_drafts, -1)).tolist()
            uniforms: dict[int, list[float]] = {}
            for j, row in enumerate(rows):   # each prompt's samples draw from its own stream, in sample order
                mine = [s for s in active if row_prompt[owner[s]] == j]
                drawn = torch.rand(sum(len(drafts[owner[s]]) + 1 for s in mine), generator=generators[row]).tolist()
                for s in mine:
                    count = len(drafts[owner[s]]) + 1
                    uniforms[s], drawn = drawn[:count], drawn[count:]
            finals, accepted = [], {}                   # (sample, position, excluded head row or -1, uniform)
            for s in active:
                r, u = owner[s], uniforms[s]
                accepted[s] = 0
                for j, t in enumerate(drafts[r]):
                    p = p_draft[r][j]
                    if u[j] >= p:                                           # rejected: drawn again without t
                        finals.append((s, j, t, (u[j] - p) / (1 - p)))
                        break
                    accepted[s] += 1
                    if add(s, t, lp_draft[r][j]):
                        break                                               # done inside the draft
                else:
                    finals.append((s, accepted[s], -1, u[accepted[s]]))
            survivors = []
            if finals:
                at = logits[[owner[f[0]] for f in finals], [f[1] for f in finals]]                  # [F, A]
                heads, lps = self._draw(at, torch.arange(len(finals), device=device),
                                        torch.tensor([f[3] for f in finals], device=device),
                                        exclude=torch.tensor([f[2] for f in finals], device=device))
                survivors = [f[0] for f, head, lp in zip(finals, heads.tolist(), lps.tolist())
                             if not add(f[0], head, lp)]
            if not survivors:
                break
            # ---- samples with equal answers so far share a row: (old row, drafts accepted, token drawn)
            groups: dict[tuple[int, int, int], int] = {}
            parents, advance, first = [], [], []                           # per new row; first: one of its samples
            for s in survivors:
                key = (owner[s], accepted[s], tokens[s][-1])
                if key not in groups:
                    groups[key] = len(parents)
                    parents.append(owner[s])
                    advance.append(1 + accepted[s] if fed else 0)           # cache positions kept from the forward
                    first.append(s)
                owner[s] = groups[key]
            active = survivors                                              # still in sample order
            # ---- the new rows' cache: the parent's positions up to its accepted drafts, left-padded to one width
            parent = torch.tensor(parents, device=device)
            keep = [mask.shape[1] - fed + a for a in advance]
            if parents != list(range(len(mask))) or min(keep) < mask.shape[1]:
                width = max(keep)
                index = torch.tensor([[0] * (width - k) + list(range(k)) for k in keep], device=device)   # [R', W]
                valid = torch.arange(width, device=device) >= width - torch.tensor(keep, device=device)[:, None]
                new_mask = mask[parent].gather(1, index) * valid
                lead = int((new_mask.cumsum(1) == 0).all(0).sum())         # columns that pad every row
                mask, index = new_mask[:, lead:], index[:, lead:]
                _regather(cache, parent, index)
            position = position[parent] + torch.tensor(advance, device=device)
            row_prompt = [row_prompt[p] for p in parents]
            # ---- drafts: what followed the row's last tokens earlier in its prompt or answer (answer tokens only)
            drafts = []
            for i, s in enumerate(first):
                room = min(self.cfg.draft_tokens, max_new - len(tokens[s]) - 1)
                found = _lookup_draft(contexts[row_prompt[i]] + tokens[s], room) if room > 0 else []
                found = found if to_row is None else [to_row.get(t, -1) for t in found]
                drafts.append(found[:found.index(-1)] if -1 in found else found)
            width = max(len(d) for d in drafts)
            pending = [tokens[s][-1] for s in first]                        # each row's last drawn token
            inputs = torch.tensor([[p] + [d if to_token is None else to_token[d] for d in ds] + [p] * (width - len(ds))
                                   for p, ds in zip(pending, drafts)], device=device)            # [R, 1 + D]
            fresh = torch.tensor([[1] * (1 + len(d)) + [0] * (width - len(d)) for d in drafts], device=device)
            mask = torch.cat([mask, fresh.to(mask.dtype)], dim=1)
            logits, cache = self._next_logits(keep=width + 1, input_ids=inputs, attention_mask=mask,
                                              position_ids=position[:, None] + torch.arange(width + 1, device=device),
                                              **{self._cache_kwarg(): cache})
            fed = width + 1
        texts = [self.tokenizer.decode(t, skip_special_tokens=True) for t in tokens]
        scores = [sum(lp) / len(lp) if lp else float("-inf") for lp in logps]
        return texts, scores

    def _sample_vllm(self, prompts: Sequence[str], n: int, seed: int, first: int, z: int) -> tuple[list[str], list[float]]:
        """vLLM path (GPUs): the text prompt with the intention but WITHOUT soft visual tokens (the placeholder line is
        dropped) and without the LoRA weights, served by ``mmreason.llm``'s vLLM backend; scores are 0 (no logprobs).
        A text-only approximation of ICVL for fast large-scale generation, not the trained model. Samples are numbered
        from ``first`` (the answers drawn before), so every answer of a prompt is a distinct cached sample."""
        from mmreason.llm import Request, SamplingParams, make_backend

        if getattr(self, "_vllm", None) is None:
            self._vllm = make_backend("vllm", model=self.cfg.llm)
        c = self.cfg
        line = re.compile(r"^.*" + re.escape(c.visual_placeholder) + r".*\n?", re.MULTILINE)
        sampling = SamplingParams(temperature=c.temperature, top_p=c.top_p, top_k=c.top_k,
                                  max_tokens=z * c.tokens_per_action + 8, seed=seed)
        requests = [Request(prompt=line.sub("", p), sampling=sampling, sample_index=first + j, tag=f"icvl{i}")
                    for i, p in enumerate(prompts) for j in range(n)]
        return [g.text for g in self._vllm.generate(requests)], [0.0] * len(requests)

    @torch.inference_mode()
    def anticipate(self, visual: torch.Tensor, prompts: Sequence[str], intentions: Sequence[str], k: int | None = None,
                   z: int | None = None, seed: int = 0) -> list[list[Candidate]]:
        """``K`` distinct candidate sequences of ``Z`` actions per prompt, best mean log-probability first.

        PALM's de-duplication: i.i.d. answers are taken in order until a prompt has K distinct mapped sequences, from
        at most ``K x (1 + dedupe_retries)`` answers (K per round, up to dedupe_retries rounds). They are drawn in
        passes of K, 2K, 4K, ... answers (capped by that budget) over the shared prompt cache: the same rule on
        the same i.i.d. stream, in fewer sequential passes when a model keeps repeating itself. Each prompt has its own
        random stream, seeded by ``seed`` and the prompt text, so its answer does not depend on the other prompts of
        the batch."""
        k = k or self.cfg.num_sequences
        z = z or self.cfg.num_future
        was_training = self.training
        self.eval()
        on_vllm = self.cfg.generation_backend == "vllm"
        if not on_vllm:
            soft = self.visual_tokens(visual, intentions)
            embeds, mask, _ = self._batch(prompts, soft, left_pad=True)
            prefix = self._prefill(embeds, mask, [self._prompt_ids(p) for p in prompts])
            generators = [torch.Generator().manual_seed(_prompt_seed(seed, p)) for p in prompts]
        found: list[dict] = [{} for _ in prompts]
        need = list(range(len(prompts)))
        budget, drawn, size = k * (self.cfg.dedupe_retries + 1), 0, k
        while need and drawn < budget:
            n = min(size, budget - drawn)
            if on_vllm:
                texts, scores = self._sample_vllm([prompts[i] for i in need], n, seed, drawn, z)
            else:
                texts, scores = self._sample(need, prefix, n, generators, z)
            for j, row in enumerate(need):
                for text, score in zip(texts[j * n:(j + 1) * n], scores[j * n:(j + 1) * n]):
                    mapped = map_sequence(text, self.vocab, z)
                    key = tuple(mapped.pairs)
                    # an answer with no mappable action is no candidate: sample again
                    if mapped.num_mapped and key not in found[row] and len(found[row]) < k:
                        found[row][key] = Candidate(mapped.pairs, score, text, mapped.num_mapped)
            need = [row for row in need if len(found[row]) < k]
            drawn, size = drawn + n, 2 * size
        self.train(was_training)
        out = []
        for row in found:
            cands = sorted(row.values(), key=lambda c: -c.score)
            while len(cands) < k:   # still short after the retry cap: repeat the best ones (nothing mapped: (0, 0))
                cands.append(cands[len(cands) % max(len(row), 1)] if cands else Candidate([(0, 0)] * z, float("-inf"), "", 0))
            out.append(sorted(cands[:k], key=lambda c: -c.score))   # repeats stay in score order
        return out


def generation_dtype(name: str, device: torch.device) -> torch.dtype | None:
    """``model.generation_dtype`` on ``device``: ``float32`` / ``bfloat16``; ``auto`` = bfloat16 where the device
    computes it fast (CUDA with bf16 support; a CPU with AMX tiles or AVX512-BF16, where oneDNN runs bf16 matmuls
    natively and decoding reads half the bytes), else None (the LLM stays as loaded)."""
    if name != "auto":
        return {"float32": torch.float32, "bfloat16": torch.bfloat16}[name]
    if device.type == "cuda":
        fast = torch.cuda.is_bf16_supported()
    else:
        cpu = getattr(torch, "cpu", None)
        fast = device.type == "cpu" and any(getattr(cpu, probe, lambda: False)()
                                            for probe in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"))
    return torch.bfloat16 if fast else None


@dataclass
class _Prefix:
    """The prompts after prefill: their KV cache (one row per prompt), next-token logits over the generation
    vocabulary ``[B, A]`` and the left-padded attention mask ``[B, L]``."""

    cache: object
    logits: torch.Tensor
    mask: torch.Tensor
    context: list[list[int]]          # each prompt's token ids, where drafts are looked up ([]: none given)


def _lookup_draft(context: list[int], limit: int, longest: int = 3) -> list[int]:
    """Prompt-lookup drafting: the (at most ``limit``) tokens that followed the latest earlier occurrence of the
    context's last ``longest``, ..., 2 or 1 tokens (the longest that occurs), or [] when none occurs.

    >>> _lookup_draft([5, 6, 7, 9, 5, 6], 2)
    [7, 9]
    """
    import numpy as np

    ids = np.asarray(context)
    for size in range(min(longest, len(ids) - 1), 0, -1):
        windows = np.lib.stride_tricks.sliding_window_view(ids[:-1], size)      # every earlier run of `size` tokens
        hits = np.flatnonzero((windows == ids[-size:]).all(1))
        if len(hits):
            start = int(hits[-1]) + size
            return ids[start:start + limit].tolist()
    return []


def _regather(cache, parent: torch.Tensor, index: torch.Tensor) -> None:
    """Rebuild a KV cache in place: new row ``i`` holds row ``parent[i]``'s positions ``index[i]`` (``[R', W]``), for
    every layer's keys and values ``[R, H, L, Dh] -> [R', H, W, Dh]``."""
    for layer in cache.layers:
        for name in ("keys", "values"):
            x = getattr(layer, name)
            rows, heads, length, dim = x.shape
            flat = (parent[:, None] * length + index).reshape(-1)          # [R' W] into the [R L] positions
            picked = x.transpose(1, 2).reshape(rows * length, heads * dim).index_select(0, flat)   # one copy per row
            setattr(layer, name, picked.view(len(parent), -1, heads, dim).transpose(1, 2))


def _kv_cache(out):
    """The KV cache of a forward output (``cache`` in transformers >= 5.x, ``past_key_values`` before)."""
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values


def _prompt_seed(seed: int, prompt: str) -> int:
    """The seed of one prompt's random stream: different prompts draw independent streams, the same prompt the same
    one (whatever batch it is in)."""
    import hashlib

    return int.from_bytes(hashlib.sha256(f"{seed}\0{prompt}".encode()).digest()[:8], "little") & (2**63 - 1)
