"""CLIP-style video transforms on uint8 frame stacks, one spatial decision per clip.

Input frames are uint8 ``[T, H, W, 3]`` (numpy from the decoders, or torch). Everything after ``to_tchw`` works on
torch ``[T, 3, H, W]`` tensors; geometry runs on uint8 (cheap), and ``normalize`` turns the result into float32
normalised with the CLIP mean/std. Random choices (crop box, flip) are drawn once per clip from a numpy
Generator, so all frames of a clip get the same crop, and a seeded Generator reproduces it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

__all__ = [
    "CLIP_MEAN",
    "CLIP_STD",
    "to_tchw",
    "resize",
    "resize_shorter",
    "center_crop",
    "random_crop",
    "random_resized_crop",
    "hflip",
    "normalize",
    "VideoTransform",
]

# OpenAI CLIP image normalisation (RGB, on [0, 1] pixels).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def _interp(name: str):
    from torchvision.transforms import InterpolationMode

    try:
        return InterpolationMode(name)
    except ValueError:
        raise ValueError(f"unknown interpolation {name!r}; use 'bicubic', 'bilinear' or 'nearest'") from None


def _rng(rng: np.random.Generator | int | None) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def to_tchw(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 ``[T, H, W, 3]`` (numpy or torch) -> uint8 torch ``[T, 3, H, W]``."""
    x = torch.as_tensor(np.ascontiguousarray(frames)) if isinstance(frames, np.ndarray) else frames
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"expected frames [T, H, W, 3], got shape {tuple(x.shape)}")
    if x.dtype != torch.uint8:
        raise ValueError(f"expected uint8 frames, got {x.dtype}")
    return x.permute(0, 3, 1, 2).contiguous()


def resize(frames: torch.Tensor, size: int | Sequence[int], interpolation: str = "bicubic") -> torch.Tensor:
    """Resize ``[T, 3, H, W]`` to ``size`` = (h, w), or to a square ``size x size`` for an int (antialiased)."""
    from torchvision.transforms.v2 import functional as F

    hw = [size, size] if isinstance(size, int) else list(size)
    return F.resize(frames, hw, interpolation=_interp(interpolation), antialias=True)


def resize_shorter(frames: torch.Tensor, size: int, interpolation: str = "bicubic") -> torch.Tensor:
    """Resize ``[T, 3, H, W]`` so the shorter side is ``size``, keeping the aspect ratio (CLIP's Resize)."""
    from torchvision.transforms.v2 import functional as F

    return F.resize(frames, [size], interpolation=_interp(interpolation), antialias=True)


def center_crop(frames: torch.Tensor, size: int | Sequence[int]) -> torch.Tensor:
    """Centre crop ``[T, 3, H, W]`` to ``size`` (int for a square)."""
    from torchvision.transforms.v2 import functional as F

    return F.center_crop(frames, [size, size] if isinstance(size, int) else list(size))


def random_crop(frames: torch.Tensor, size: int, rng: np.random.Generator | int | None = None) -> torch.Tensor:
    """The same random ``size x size`` window for every frame of ``[T, 3, H, W]``."""
    h, w = frames.shape[-2:]
    if size > h or size > w:
        raise ValueError(f"crop size {size} is larger than the frames ({h}x{w})")
    g = _rng(rng)
    top, left = int(g.integers(0, h - size + 1)), int(g.integers(0, w - size + 1))
    return frames[..., top : top + size, left : left + size]


def random_resized_crop(
    frames: torch.Tensor,
    size: int,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    rng: np.random.Generator | int | None = None,
    interpolation: str = "bicubic",
) -> torch.Tensor:
    """torchvision's RandomResizedCrop box rule (area fraction in ``scale``, log-uniform aspect ``ratio``, 10
    tries, then a centre fallback), one box for the whole clip, resized to ``size x size``."""
    from torchvision.transforms.v2 import functional as F

    g = _rng(rng)
    h, w = frames.shape[-2:]
    area = h * w
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target_area = area * g.uniform(*scale)
        aspect = math.exp(g.uniform(*log_ratio))
        cw = int(round(math.sqrt(target_area * aspect)))
        ch = int(round(math.sqrt(target_area / aspect)))
        if 0 < cw <= w and 0 < ch <= h:
            top, left = int(g.integers(0, h - ch + 1)), int(g.integers(0, w - cw + 1))
            break
    else:  # centre crop with the aspect ratio clamped into `ratio`
        in_ratio = w / h
        if in_ratio < ratio[0]:
            cw, ch = w, int(round(w / ratio[0]))
        elif in_ratio > ratio[1]:
            ch, cw = h, int(round(h * ratio[1]))
        else:
            cw, ch = w, h
        top, left = (h - ch) // 2, (w - cw) // 2
    return F.resized_crop(frames, top, left, ch, cw, [size, size], interpolation=_interp(interpolation), antialias=True)


def hflip(frames: torch.Tensor) -> torch.Tensor:
    """Mirror ``[T, 3, H, W]`` left-right."""
    return frames.flip(-1)


def normalize(
    frames: torch.Tensor, mean: Sequence[float] = CLIP_MEAN, std: Sequence[float] = CLIP_STD
) -> torch.Tensor:
    """uint8 ``[T, 3, H, W]`` -> float32 ``(x / 255 - mean) / std`` per channel."""
    x = frames.to(torch.float32) / 255.0
    mean_t = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    return (x - mean_t) / std_t


@dataclass
class VideoTransform:
    """The usual CLIP video pipeline: frames uint8 ``[T, H, W, 3]`` -> float32 ``[T, 3, size, size]``.

    Test: resize (shorter side, or a square when ``square_resize``) to ``resize_to`` -> centre crop ``size``.
    Train, ``train_crop="random_resized"``: RandomResizedCrop(``size``, ``scale``) on the original frames.
    Train, ``train_crop="random"``: the test resize, then a random ``size`` crop (Task-Adapter: square resize to
    257, random crop 224). Then a horizontal flip with probability ``flip_prob`` (training only) and CLIP
    normalisation.
    """

    size: int = 224
    train: bool = False
    resize_to: int | None = None  # None -> size (CLIP eval: shorter side 224, centre crop 224)
    square_resize: bool = False
    train_crop: str = "random_resized"  # "random_resized" | "random"
    scale: tuple[float, float] = (0.08, 1.0)
    flip_prob: float = 0.5
    interpolation: str = "bicubic"
    mean: tuple[float, ...] = CLIP_MEAN
    std: tuple[float, ...] = CLIP_STD

    def __post_init__(self):
        if self.train_crop not in ("random_resized", "random"):
            raise ValueError(f"train_crop must be 'random_resized' or 'random', got {self.train_crop!r}")
        if (self.resize_to or self.size) < self.size:
            raise ValueError(f"resize_to={self.resize_to} is smaller than the crop size {self.size}")

    def _resize(self, x: torch.Tensor) -> torch.Tensor:
        target = self.resize_to or self.size
        return resize(x, target, self.interpolation) if self.square_resize else resize_shorter(x, target, self.interpolation)

    def __call__(self, frames: np.ndarray | torch.Tensor, rng: np.random.Generator | int | None = None) -> torch.Tensor:
        x = to_tchw(frames)  # [T, 3, H, W] uint8
        if not self.train:
            x = center_crop(self._resize(x), self.size)
        else:
            g = _rng(rng)
            if self.train_crop == "random_resized":
                x = random_resized_crop(x, self.size, self.scale, rng=g, interpolation=self.interpolation)
            else:
                x = random_crop(self._resize(x), self.size, rng=g)
            if g.random() < self.flip_prob:
                x = hflip(x)
        return normalize(x, self.mean, self.std)  # [T, 3, size, size] float32
