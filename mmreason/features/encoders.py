"""Frame encoders named by one spec string: ``uint8 frames [T, H, W, 3] -> float32 features [T, D]``.

The same string is what ``mmreason extract --encoder`` writes into a feature folder's manifest, what a run records
(ICVL's ``data.encoder``) and what the Anticipator rebuilds to encode a video query, so features and queries always
come from the same encoder:

    openclip:<arch>                     an open_clip model config (``ViT-L-14-quickgelu``, or the tiny test presets
                                        ``mmr-tiny-32`` / ``mmr-tiny-64``), randomly initialised with seed 0 (warns:
                                        such features mean nothing outside tests)
    openclip:<arch>:<tag>               with open_clip pretrained weights (``openclip:ViT-L-14-quickgelu:openai`` is
                                        the CLIP ViT-L/14 AntGPT uses, 768-d)
    openclip:<arch>:<checkpoint file>   with a local OpenAI-layout checkpoint (JIT archive or state dict)
    pixels:<dim>                        the weight-free TEST encoder: 16 x 16 area-downsampled RGB times a fixed seeded
                                        Gaussian projection to ``dim`` (no visual semantics; synthetic configs only)

The CLIP towers are the project's (:func:`mmreason.clip.build_clip`): frames are resized (shorter side) to the
tower's input size, centre-cropped and CLIP-normalised (:class:`mmreason.video.VideoTransform`), and the feature
is the image embedding (CLS token -> ln_post -> projection), not L2-normalised.
"""
from __future__ import annotations

import abc
import warnings
from pathlib import Path

import numpy as np
import torch

__all__ = ["EncoderError", "FrameEncoder", "OpenClipEncoder", "PixelFrameEncoder", "RandomWeightsWarning",
           "load_encoder", "parse_encoder_spec"]


class EncoderError(ValueError):
    """An encoder spec cannot be used (not understood, or its weights cannot be loaded); the message names it."""


class RandomWeightsWarning(UserWarning):
    """An encoder spec names no weights: the encoder is randomly initialised."""


class FrameEncoder(abc.ABC):
    """``frames uint8 [T, H, W, 3] -> float32 [T, dim]``; ``spec`` names it exactly, ``calls`` counts encode calls."""

    spec: str = ""
    dim: int = 0

    def __init__(self):
        self.calls = 0

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"{self.spec}: expected uint8 frames [T, H, W, 3], got {frames.dtype} {frames.shape}")
        self.calls += 1
        if len(frames) == 0:
            return np.zeros((0, self.dim), np.float32)
        return self.encode(frames)

    @abc.abstractmethod
    def encode(self, frames: np.ndarray) -> np.ndarray:
        """``uint8 [T, H, W, 3]`` (T >= 1) -> ``float32 [T, dim]``."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec!r}, dim={self.dim})"


class PixelFrameEncoder(FrameEncoder):
    """The TEST encoder ``pixels:<dim>``: each frame area-downsampled to 16 x 16 RGB (768 numbers), centred, times a
    fixed seeded Gaussian matrix ``[768, dim] / sqrt(768)``. Deterministic and weight-free; not a visual model."""

    def __init__(self, dim: int, size: int = 16, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.dim, self.size, self.spec = int(dim), size, f"pixels:{int(dim)}"
        self.projection = torch.randn(size * size * 3, self.dim, generator=g) / (size * size * 3) ** 0.5

    def encode(self, frames: np.ndarray) -> np.ndarray:
        x = torch.as_tensor(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 255.0   # [T, 3, H, W]
        x = torch.nn.functional.adaptive_avg_pool2d(x, self.size).flatten(1) - 0.5              # [T, 768]
        return (x @ self.projection).numpy()                                                      # [T, D]


class OpenClipEncoder(FrameEncoder):
    """A CLIP vision tower (:func:`mmreason.clip.build_clip`) over frames, ``batch_size`` frames per forward."""

    def __init__(self, spec: str, arch: str, weights: str = "", *, device: str | None = None, batch_size: int = 64):
        super().__init__()
        from mmreason.clip import build_clip
        from mmreason.video import VideoTransform

        self.spec, self.batch_size = spec, batch_size
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        local = bool(weights) and Path(weights).expanduser().is_file()
        if weights and not local and ("/" in weights or weights.endswith((".pt", ".pth", ".bin", ".safetensors"))):
            raise FileNotFoundError(f"encoder {spec!r}: checkpoint file {weights} not found")
        try:
            towers = build_clip(arch, pretrained="" if local else weights,
                                checkpoint=str(Path(weights).expanduser()) if local else "")
        except (OSError, RuntimeError) as e:   # e.g. weights not downloadable offline
            raise EncoderError(f"encoder {spec!r}: cannot load the weights ({e})") from e
        if not weights:
            warnings.warn(f"encoder {spec!r} names no weights: randomly initialised (seed 0); its features carry no "
                          "visual meaning (tests only). Name a pretrained tag, e.g. openclip:ViT-L-14-quickgelu:openai",
                          RandomWeightsWarning, stacklevel=3)
        self.tower = towers.vision.to(self.device).eval()
        del towers                                                          # the text tower is not needed
        self.dim = int(self.tower.output_dim)
        self.transform = VideoTransform(size=int(self.tower.image_size))   # shorter side, centre crop, CLIP norm

    @torch.no_grad()
    def encode(self, frames: np.ndarray) -> np.ndarray:
        out = []
        for start in range(0, len(frames), self.batch_size):
            x = self.transform(frames[start:start + self.batch_size]).to(self.device)   # [t, 3, S, S]
            out.append(self.tower(x[:, None]).squeeze(1).float().cpu())                 # [t, 1, E] -> [t, E]
        return torch.cat(out).numpy()


def parse_encoder_spec(spec: str) -> tuple[str, str, str]:
    """``"openclip:ViT-L-14-quickgelu:openai"`` -> ``("openclip", "ViT-L-14-quickgelu", "openai")``; an unusable
    spec is a ``ValueError`` that says what a spec looks like."""
    parts = str(spec).strip().split(":", 2)
    kind = parts[0]
    if kind == "openclip" and len(parts) >= 2 and parts[1]:
        return kind, parts[1], parts[2] if len(parts) == 3 else ""
    if kind == "pixels" and len(parts) == 2 and parts[1].isdigit() and int(parts[1]) > 0:
        return kind, parts[1], ""
    raise EncoderError(f"encoder spec {spec!r} not understood; use openclip:<arch>[:<pretrained tag or checkpoint "
                     "file>] (e.g. openclip:ViT-L-14-quickgelu:openai) or pixels:<dim> (the weight-free test encoder)")


def load_encoder(spec: str, *, device: str | None = None, batch_size: int = 64) -> FrameEncoder:
    """Build the encoder a spec names (see the module docstring)."""
    kind, arch, weights = parse_encoder_spec(spec)
    if kind == "pixels":
        return PixelFrameEncoder(int(arch))
    return OpenClipEncoder(str(spec).strip(), arch, weights, device=device, batch_size=batch_size)
