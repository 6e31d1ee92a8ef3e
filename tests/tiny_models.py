"""Tiny randomly initialised Hugging Face models with word-level tokenizers, saved like hub checkpoints, for tests
of the real HF loading and generation paths (no hub here). Import from any test: ``from tiny_models import ...``."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

SPECIALS = ["<pad>", "<s>", "</s>", "<unk>"]
CHAT_TEMPLATE = ("{% for m in messages %}{{ m['role'] }} : {% for p in m['content'] %}"
                 "{% if p['type'] == 'image' %}<image> {% else %}{{ p['text'] }} {% endif %}{% endfor %}{% endfor %}"
                 "{% if add_generation_prompt %}assistant : {% endif %}")


def word_tokenizer(words: Sequence[str], image_token: bool = False):
    """``(tokenizer, vocab)``: one id per whitespace-separated word (+ specials, ``:``, ``user``, ``assistant``)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = SPECIALS + (["<image>"] if image_token else [])
    vocab = {t: i for i, t in enumerate(specials + list(words) + [":", "user", "assistant"])}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tk.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    tk.add_special_tokens(specials)
    extra = {"extra_special_tokens": {"image_token": "<image>"}} if image_token else {}
    return PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>", **extra), vocab


def _llama_config(vocab: dict, max_positions: int):
    from transformers import LlamaConfig

    return LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                       num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=max_positions,
                       pad_token_id=0, bos_token_id=1, eos_token_id=2, tie_word_embeddings=False)


def save_tiny_llava(path: Path, words: Sequence[str], *, patch_size: int = 8, vision_layers: int = 2,
                    max_positions: int = 256, chat_template: str | None = CHAT_TEMPLATE) -> Path:
    """A LLaVA (CLIP vision tower on 32 x 32 images + a 2-layer Llama) saved with its processor under ``path``;
    ``(32 // patch_size) ** 2`` image tokens per frame (CLIP's CLS token is dropped by the "default" strategy)."""
    import torch
    from transformers import (CLIPImageProcessor, CLIPVisionConfig, LlavaConfig, LlavaForConditionalGeneration,
                              LlavaProcessor)

    tokenizer, vocab = word_tokenizer(words, image_token=True)
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=vision_layers,
                              num_attention_heads=2, image_size=32, patch_size=patch_size, projection_dim=32)
    config = LlavaConfig(vision_config=vision, text_config=_llama_config(vocab, max_positions),
                         image_token_index=vocab["<image>"], vision_feature_layer=-1,
                         vision_feature_select_strategy="default")
    torch.manual_seed(0)
    model = LlavaForConditionalGeneration(config)
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
        tokenizer=tokenizer, patch_size=patch_size, vision_feature_select_strategy="default",
        num_additional_image_tokens=1, **({"chat_template": chat_template} if chat_template else {}))
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


def save_tiny_llama(path: Path, words: Sequence[str], max_positions: int = 512) -> Path:
    """A text-only 2-layer Llama saved with its tokenizer under ``path``."""
    import torch
    from transformers import LlamaForCausalLM

    tokenizer, vocab = word_tokenizer(words)
    torch.manual_seed(0)
    LlamaForCausalLM(_llama_config(vocab, max_positions)).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
