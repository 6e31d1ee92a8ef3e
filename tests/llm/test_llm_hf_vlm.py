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
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import (CLIPImageProcessor, CLIPVisionConfig, LlamaConfig, LlavaConfig,
                              LlavaForConditionalGeneration, LlavaProcessor, PreTrainedTokenizerFast)

    specials = ["<pad>", "<s>", "</s>", "<unk>", "<image>"]
    vocab = {t: i for i, t in enumerate(specials + WORDS + [":", "user", "assistant"])}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tk.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    tk.add_special_tokens(specials)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                        unk_token="<unk>", extra_special_tokens={"image_token": "<image>"})
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                              image_size=32, patch_size=8, projection_dim=32)
    text = LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                       num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
                       pad_token_id=0, bos_token_id=1, eos_token_id=2)
    config = LlavaConfig(vision_config=vision, text_config=text, image_token_index=vocab["<image>"],
                         vision_feature_layer=-1, vision_feature_select_strategy="default")
    torch.manual_seed(0)
    model = LlavaForConditionalGeneration(config)
    template = ("{% for m in messages %}{{ m['role'] }} : {% for p in m['content'] %}"
                "{% if p['type'] == 'image' %}<image> {% else %}{{ p['text'] }} {% endif %}{% endfor %}{% endfor %}"
                "{% if add_generation_prompt %}assistant : {% endif %}")
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
        tokenizer=tokenizer, patch_size=8, vision_feature_select_strategy="default",
        num_additional_image_tokens=1, chat_template=template)  # CLIP's CLS token is dropped by "default"
    path = tmp_path_factory.mktemp("tiny_llava")
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


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
