"""The HF backend's image-text-to-text path end to end: a tiny randomly initialised LLaVA (CLIP vision tower +
Llama text model, built from configs and saved like a hub checkpoint, with a word-level tokenizer built here)
fed frames of a real H.264 clip decoded with PyAV."""
from __future__ import annotations

import numpy as np
import pytest

from mmreason.llm import HFBackend, Request, SamplingParams

WORDS = "the a person hand cup table picks up puts down open door walk turn look camera next will and then".split()
PATCHES_PER_IMAGE = (32 // 8) ** 2  # image 32x32, patch 8 -> 16 image tokens per frame


@pytest.fixture(scope="module")
def tiny_llava_dir(tmp_path_factory):
    from tiny_models import save_tiny_llava

    return save_tiny_llava(tmp_path_factory.mktemp("tiny_llava"), WORDS, patch_size=8)


@pytest.fixture(scope="module")
def frames(real_video_paths):
    """Six RGB frames [240, 320, 3] uint8 of the real 'bikes' clip, spread over its first 60 frames."""
    import av

    out = []
    with av.open(str(real_video_paths["bikes"])) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i % 10 == 0:
                out.append(frame.to_ndarray(format="rgb24"))
            if len(out) == 6:
                break
    assert len(out) == 6 and out[0].dtype == np.uint8 and out[0].ndim == 3
    return out


def test_tiny_vlm_generates_from_real_video_frames(tiny_llava_dir, frames):
    llm = HFBackend(str(tiny_llava_dir), device="cpu", batch_size=4)
    assert llm.is_vlm and llm.revision == "local"
    chat = Request(messages=[{"role": "user", "content": "the person will"}], images=tuple(frames[:2]),
                   sampling=SamplingParams(max_tokens=5), tag="chat")
    prompt = Request(prompt="the person picks up the", images=tuple(frames[2:5]), tag="prompt",
                     sampling=SamplingParams(max_tokens=4, temperature=1.0, seed=3))
    text_only = Request(prompt="the person", sampling=SamplingParams(max_tokens=3), tag="no frames")
    # the frames are placed by the chat template, or in front of a completion prompt
    assert llm.render(chat) == "user : <image> <image> the person will assistant : "
    assert llm.render(prompt) == "<image><image><image>\nthe person picks up the"
    gens = llm.generate([chat, prompt, text_only])
    for g in gens:
        assert g.backend == "hf" and 1 <= g.num_output_tokens and g.finish_reason in ("stop", "length")
    # each frame became PATCHES_PER_IMAGE image tokens in the prompt the model saw, next to one token per word
    # (this word-level tokenizer adds no BOS); padding is not counted
    assert gens[0].num_prompt_tokens == 2 * PATCHES_PER_IMAGE + len("user : the person will assistant :".split())
    assert gens[1].num_prompt_tokens == 3 * PATCHES_PER_IMAGE + 5
    assert gens[2].num_prompt_tokens == 2
    assert gens[1].num_output_tokens == 4 or gens[1].finish_reason == "stop"
    # a sampled VLM answer is reproducible, alone or batched with others
    (again,) = llm.generate([prompt])
    assert again.text == gens[1].text
