"""CLIP towers: the re-applicable frozen attention matches open_clip, weights load from local checkpoints."""
from __future__ import annotations

import copy
import json
import warnings

import pytest
import torch

from mmreason.clip import (ActivationMismatchWarning, TextFeatureCache, block_attention,
                           block_forward, build_clip, read_openai_checkpoint)
from mmreason.clip.adapters import BottleneckAdapter, inject_lora


@pytest.fixture(scope="module")
def tiny_clip():
    """A tiny open_clip CLIP (QuickGELU), random weights, seed 0."""
    import open_clip

    from mmreason.clip import register_presets

    register_presets()
    torch.manual_seed(0)
    return open_clip.create_model("mmr-tiny-32").eval()


@pytest.fixture(scope="module")
def checkpoints(tiny_clip, tmp_path_factory):
    """The tiny model saved as an OpenAI-style state dict, a wrapped {"state_dict": {"module.*"}} dict and a
    TorchScript-scripted archive; plus a GELU variant of the config registered with open_clip."""
    import open_clip

    folder = tmp_path_factory.mktemp("clip_ckpt")
    sd_path = folder / "tiny_state_dict.pt"
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in tiny_clip.state_dict().items()}, sd_path)
    wrapped = folder / "tiny_wrapped.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in tiny_clip.state_dict().items()}}, wrapped)
    jit_path = folder / "tiny_jit.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.script(tiny_clip).save(str(jit_path))
    cfg = copy.deepcopy(open_clip.get_model_config("mmr-tiny-32"))
    cfg["quick_gelu"] = False
    gelu_cfg = folder / "mmr-tiny-32-gelu.json"
    gelu_cfg.write_text(json.dumps(cfg))
    open_clip.add_model_config(gelu_cfg)
    return {"state_dict": sd_path, "wrapped": wrapped, "jit": jit_path}


def _frames(b=2, t=3, size=32, seed=1):
    return torch.randn(b, t, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_block_functions_match_open_clip_blocks(tiny_clip):
    block = tiny_clip.visual.transformer.resblocks[0]
    x = torch.randn(3, 5, 64)
    torch.testing.assert_close(block_attention(block, x), block.attention(block.ln_1(x)))
    torch.testing.assert_close(block_forward(block, x), block(x))
    tblock = tiny_clip.transformer.resblocks[1]
    xt = torch.randn(2, tiny_clip.context_length, 32)
    torch.testing.assert_close(block_forward(tblock, xt, tiny_clip.attn_mask), tblock(xt, attn_mask=tiny_clip.attn_mask))


def test_towers_match_open_clip_encoders(tiny_clip, checkpoints):
    towers = build_clip("mmr-tiny-32", checkpoint=str(checkpoints["wrapped"]))
    frames = _frames()
    feats = towers.vision(frames)  # [B, T, E]
    assert feats.shape == (2, 3, 32)
    torch.testing.assert_close(feats, tiny_clip.encode_image(frames.flatten(0, 1)).view(2, 3, -1))
    tokens = towers.tokenize(["a video of action about clap", "brush hair"])
    torch.testing.assert_close(towers.text(tokens), tiny_clip.encode_text(tokens))


def test_zero_temporal_embedding_keeps_per_frame_features(tiny_clip, checkpoints):
    plain = build_clip("mmr-tiny-32", checkpoint=str(checkpoints["wrapped"])).vision
    video = build_clip("mmr-tiny-32", checkpoint=str(checkpoints["wrapped"]), num_frames=3).vision
    assert video.temporal_embedding.shape == (1, 3, 64)
    frames = _frames()
    torch.testing.assert_close(video(frames), plain(frames))
    with torch.no_grad():
        video.temporal_embedding[0, 1] += 1.0  # frame 1 only
    out, ref = video(frames), plain(frames)
    torch.testing.assert_close(out[:, [0, 2]], ref[:, [0, 2]])
    assert not torch.allclose(out[:, 1], ref[:, 1])
    with pytest.raises(ValueError, match="3 frames"):
        video(_frames(t=4))


@pytest.mark.parametrize("kind", ["state_dict", "jit"])
def test_loader_reads_local_checkpoints(tiny_clip, checkpoints, kind):
    with warnings.catch_warnings():
        warnings.simplefilter("error", ActivationMismatchWarning)  # QuickGELU weights into a QuickGELU config
        towers = build_clip("mmr-tiny-32", checkpoint=str(checkpoints[kind]))
    frames = _frames()
    ref = tiny_clip.encode_image(frames.flatten(0, 1)).view(2, 3, -1)
    tol = dict(atol=2e-2, rtol=2e-2) if kind == "state_dict" else {}  # that file was saved in fp16, like OpenAI's
    torch.testing.assert_close(towers.vision(frames), ref, **tol)
    state, activation = read_openai_checkpoint(checkpoints[kind])
    assert activation == ("quick_gelu" if kind == "jit" else None)
    assert "visual.transformer.resblocks.0.attn.in_proj_weight" in state


@pytest.mark.parametrize("kind", ["state_dict", "jit"])
def test_loader_warns_on_activation_mismatch(checkpoints, kind):
    with pytest.warns(ActivationMismatchWarning, match="quick_gelu"):
        build_clip("mmr-tiny-32-gelu", checkpoint=str(checkpoints[kind]))


def test_loader_reads_gelu_from_a_gelu_archive(checkpoints, tmp_path):
    import open_clip

    gelu_model = open_clip.create_model("mmr-tiny-32-gelu")
    path = tmp_path / "gelu_jit.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.script(gelu_model).save(str(path))
    assert read_openai_checkpoint(path)[1] == "gelu"
    with pytest.warns(ActivationMismatchWarning, match="gelu"):
        build_clip("mmr-tiny-32", checkpoint=str(path))


def test_loader_errors_name_the_input(checkpoints, tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        build_clip("mmr-tiny-32", checkpoint=str(tmp_path / "missing.pt"))
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pt"):
        build_clip("mmr-tiny-32", checkpoint=str(junk))
    with pytest.raises(ValueError, match="tiny_state_dict.pt does not match model config 'mmr-tiny-64'"):
        build_clip("mmr-tiny-64", checkpoint=str(checkpoints["state_dict"]))  # positional embedding 5 vs 17
    with pytest.raises(ValueError, match="did you mean"):
        build_clip("mmr-tiny-23")
    with pytest.raises(ValueError, match="not both"):
        build_clip("mmr-tiny-32", pretrained="openai", checkpoint=str(checkpoints["jit"]))


def test_text_feature_cache_encodes_each_prompt_once(tiny_clip):
    towers = build_clip("mmr-tiny-32")
    calls = []
    cache = TextFeatureCache(towers.text, lambda texts: calls.append(list(texts)) or towers.tokenize(texts))
    feats = cache.encode(["a", "b", "a"])
    assert feats.shape == (3, 32)
    torch.testing.assert_close(feats[0], feats[2])
    torch.testing.assert_close(feats[1], towers.text(towers.tokenize(["b"]))[0].detach())
    cache.encode(["b", "c"])
    assert calls == [["a", "b"], ["c"]] and len(cache) == 3


def test_bottleneck_adapter_shapes_and_init():
    a = BottleneckAdapter(768, 0.25, skip=False, zero_init=True)
    assert a.fc1.out_features == 192 and a.fc2.out_features == 768
    x = torch.randn(2, 768)
    assert torch.equal(a(x), torch.zeros_like(x))
    assert torch.equal(BottleneckAdapter(768, 0.25, skip=True)(x), x)


def test_lora_injection_adapts_named_modules_and_fails_loudly():
    vision = build_clip("mmr-tiny-32").vision
    for p in vision.parameters():
        p.requires_grad_(False)
    frames = _frames()
    ref = vision(frames)
    names = inject_lora(vision.blocks, [1], ["attn.out_proj", "mlp.c_fc"], rank=4, alpha=8)
    assert names == ["blocks.1.attn.out_proj", "blocks.1.mlp.c_fc"]
    trainable = [n for n, p in vision.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n and n.startswith("blocks.1.") for n in trainable)
    torch.testing.assert_close(vision(frames), ref)  # LoRA's B starts at zero
    with torch.no_grad():  # and LoRA is on the path block_attention uses (random B: a constant one would only
        # shift every channel equally, which ln_post removes)
        vision.blocks[1].attn.out_proj.lora_B["default"].weight.normal_(0, 0.1, generator=torch.Generator().manual_seed(0))
    assert not torch.allclose(vision(frames), ref)
    with pytest.raises(ValueError, match="'attn.q_proj' not found in blocks\\[0\\]"):
        inject_lora(vision.blocks, [0], ["attn.q_proj"], rank=4, alpha=8)
