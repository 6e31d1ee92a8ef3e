"""CLIP vision and text towers whose residual blocks expose their frozen attention as a function.

The modules themselves are open_clip's (built from an open_clip model config, so the parameter names are the
OpenAI layout: ``visual.transformer.resblocks.{i}.attn.in_proj_weight``, ``ln_1``, ``mlp.c_fc`` ...). What this
file adds is the forward pass written in terms of three pure functions of a block's weights:

* :func:`block_attention` — ``ls_1(attn(ln_1(x)))`` for batch-first tokens ``[B, L, D]``. Adapter methods
  re-apply it to rearranged token sets (frames of one position ``[(B L), T, D]``, videos of one
  frame/position ``[(T L), B, D]``, sibling prompts ``[(N L), S, D]``).
* :func:`block_mlp` — ``ls_2(mlp(ln_2(x)))``.
* :func:`block_forward` — the unmodified residual block, ``x + attn; x + mlp``.

The attention is written out (``in_proj`` as a linear map, scaled dot-product, then the ``out_proj`` module)
instead of calling ``nn.MultiheadAttention.forward``, so that a PEFT LoRA layer injected into ``out_proj``
takes part in the computation.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def block_attention(block: nn.Module, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Frozen self-attention of one residual block on batch-first tokens: ``ls_1(attn(ln_1(x)))``.

    Args:
        block: an open_clip ``ResidualAttentionBlock`` (``ln_1``, ``attn`` = ``nn.MultiheadAttention``, ``ls_1``).
        x: ``[B, L, D]`` token sequences; attention runs along ``L`` independently for each of the ``B`` rows.
        attn_mask: optional additive ``[L, L]`` mask (``-inf`` blocks), e.g. the text tower's causal mask.
    """
    mha: nn.MultiheadAttention = block.attn
    h = block.ln_1(x)
    batch, length, width = h.shape
    heads = mha.num_heads
    qkv = F.linear(h, mha.in_proj_weight, mha.in_proj_bias)  # [B, L, 3D]
    q, k, v = (t.reshape(batch, length, heads, width // heads).transpose(1, 2) for t in qkv.chunk(3, dim=-1))
    if attn_mask is not None:
        attn_mask = attn_mask.to(q.dtype)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)  # [B, H, L, D/H]
    out = out.transpose(1, 2).reshape(batch, length, width)
    return block.ls_1(mha.out_proj(out))


def block_mlp(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``ls_2(mlp(ln_2(x)))`` of one residual block."""
    return block.ls_2(block.mlp(block.ln_2(x)))


def block_forward(block: nn.Module, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
    """The unmodified pre-norm residual block on batch-first tokens ``[B, L, D]``."""
    x = x + block_attention(block, x, attn_mask)
    return x + block_mlp(block, x)


class CLIPVisionTower(nn.Module):
    """CLIP ViT applied frame by frame: ``[B, T, 3, H, W]`` -> per-frame features ``[B, T, E]``.

    Holds open_clip's vision modules (``conv1``, ``class_embedding``, ``positional_embedding``, ``ln_pre``,
    ``blocks``, ``ln_post``, ``proj``) plus an optional learnable ``temporal_embedding`` ``[1, T, D]``
    (zero-initialised, added to every token of frame ``t`` after the positional embedding, as in AIM-style
    video adapters). Subclasses or methods override :meth:`run_blocks` to adapt blocks.
    """

    def __init__(self, visual: nn.Module, num_frames: int = 0):
        super().__init__()
        if not hasattr(visual, "conv1") or not hasattr(visual, "transformer"):
            raise TypeError(f"expected an open_clip VisionTransformer, got {type(visual).__name__}")
        self.conv1 = visual.conv1
        self.class_embedding = visual.class_embedding
        self.positional_embedding = visual.positional_embedding
        self.ln_pre = visual.ln_pre
        self.blocks = visual.transformer.resblocks
        self.ln_post = visual.ln_post
        self.proj = visual.proj
        self.width = self.conv1.out_channels
        self.patch_size = self.conv1.kernel_size[0]
        self.image_size = visual.image_size[0] if isinstance(visual.image_size, (tuple, list)) else visual.image_size
        self.output_dim = self.proj.shape[1] if self.proj is not None else self.width
        self.num_frames = num_frames
        self.temporal_embedding = nn.Parameter(torch.zeros(1, num_frames, self.width)) if num_frames > 0 else None

    @property
    def num_layers(self) -> int:
        return len(self.blocks)

    def embed(self, frames: torch.Tensor) -> torch.Tensor:
        """``[B, T, 3, H, W]`` -> tokens ``[(B T), 1 + P, D]`` (CLS + patches, pos + temporal emb, ln_pre)."""
        if frames.ndim != 5:
            raise ValueError(f"expected frames [B, T, 3, H, W], got shape {tuple(frames.shape)}")
        batch, time = frames.shape[:2]
        x = self.conv1(frames.flatten(0, 1).to(self.conv1.weight.dtype))  # [(B T), D, h, w]
        x = x.flatten(2).transpose(1, 2)  # [(B T), P, D]
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)  # [(B T), L, D]
        if self.temporal_embedding is not None:
            if time != self.num_frames:
                raise ValueError(f"the temporal embedding is for {self.num_frames} frames, got {time}")
            x = (x.view(batch, time, *x.shape[1:]) + self.temporal_embedding[:, :, None, :]).flatten(0, 1)
        return self.ln_pre(x)

    def run_blocks(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        """All residual blocks on ``[(B T), L, D]``; the plain CLIP blocks here."""
        for block in self.blocks:
            x = block_forward(block, x)
        return x

    def head(self, x: torch.Tensor) -> torch.Tensor:
        """CLS token -> ln_post -> proj: ``[N, L, D]`` -> ``[N, E]``."""
        x = self.ln_post(x[:, 0])
        return x @ self.proj if self.proj is not None else x

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        batch, time = frames.shape[:2]
        x = self.run_blocks(self.embed(frames), time)
        return self.head(x).view(batch, time, -1)  # [B, T, E]


class CLIPTextTower(nn.Module):
    """CLIP text transformer: token ids ``[B, C]`` -> features ``[B, E]`` (causal mask, EOT pooling)."""

    def __init__(self, clip: nn.Module):
        super().__init__()
        self.token_embedding = clip.token_embedding
        self.positional_embedding = clip.positional_embedding
        self.blocks = clip.transformer.resblocks
        self.ln_final = clip.ln_final
        self.text_projection = clip.text_projection
        self.register_buffer("attn_mask", clip.attn_mask.clone(), persistent=False)
        self.context_length = clip.context_length
        self.width = self.token_embedding.embedding_dim

    @property
    def num_layers(self) -> int:
        return len(self.blocks)

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        """``[B, C]`` ids -> ``[B, C, W]`` token + positional embeddings."""
        return self.token_embedding(tokens) + self.positional_embedding

    def run_blocks(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block_forward(block, x, self.attn_mask)
        return x

    def pool(self, x: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """EOT token (the largest id in each row) -> ln_final -> text_projection: ``[B, E]``."""
        x = self.ln_final(x[torch.arange(x.shape[0], device=x.device), tokens.argmax(dim=-1)])
        proj = self.text_projection
        if proj is None:
            return x
        return proj(x) if isinstance(proj, nn.Linear) else x @ proj

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.pool(self.run_blocks(self.embed(tokens)), tokens)
