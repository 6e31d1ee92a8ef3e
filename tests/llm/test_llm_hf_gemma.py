"""The embedded Gemma 3 270M through the HF backend: conversion, left-padded batches, greedy batch invariance,
seeded sampling, stop strings, and cache replay under the same model identity."""
from __future__ import annotations

import json

import pytest

from mmreason.llm import CachedBackend, ReplayBackend, Request, ResponseCache, SamplingParams
from mmreason.llm.parsing import parse_numbered_list

pytestmark = pytest.mark.slow

SHORT = "Monday, Tuesday, Wednesday,"
LONG = "The days of the week are:\n1. Monday\n2. Tuesday\n3."


def greedy(prompt: str, n: int = 8, **kw) -> Request:
    return Request(prompt=prompt, sampling=SamplingParams(max_tokens=n, **kw))


def test_converted_folder_is_a_plain_transformers_model(gemma_path):
    names = {p.name for p in gemma_path.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "mmreason_model.json", "GEMMA_TERMS.html"} <= names
    config = json.loads((gemma_path / "config.json").read_text())
    assert config["model_type"] == "gemma3_text" and "quantization_config" not in config
    assert config["num_hidden_layers"] == 18 and config["hidden_size"] == 640
    assert not any(p.name.endswith(".gguf") for p in gemma_path.iterdir())  # the assembled GGUF is removed


@pytest.fixture(scope="module")
def pair(gemma):
    """SHORT and LONG generated greedily in one left-padded batch."""
    return gemma.generate([greedy(SHORT), greedy(LONG)])


def test_two_prompts_in_one_left_padded_batch_give_sensible_text(gemma, pair):
    short, long_ = pair
    assert short.num_prompt_tokens < long_.num_prompt_tokens  # different lengths: the short one was padded
    assert short.text.strip() and long_.text.strip()
    assert "Thursday" in short.text                                   # the base model continues the pattern
    assert parse_numbered_list("3." + long_.text)[:2] == ["Wednesday", "Thursday"]
    assert short.finish_reason == "length" and short.num_output_tokens == 8
    assert short.backend == "hf" and short.model_id == gemma.model_id


def test_batched_greedy_equals_one_at_a_time(gemma, pair):
    single = [gemma.generate([greedy(p)])[0] for p in (SHORT, LONG)]
    assert [g.text for g in pair] == [g.text for g in single]
    assert [g.num_prompt_tokens for g in pair] == [g.num_prompt_tokens for g in single]


def test_seeded_sampling_is_reproducible_and_batch_independent(gemma):
    def sampled(seed: int, sample_index: int = 0) -> Request:
        return Request(prompt="Once upon a time", sample_index=sample_index,
                       sampling=SamplingParams(temperature=1.0, top_p=0.95, top_k=50, max_tokens=8, seed=seed))

    (a,) = gemma.generate([sampled(1)])
    b, other_index, other_seed = gemma.generate([sampled(1), sampled(1, 1), sampled(2)])  # other batch company
    assert a.text == b.text and a.text.strip()
    assert len({a.text, other_index.text, other_seed.text}) > 1   # new seeds / sample indices give new samples


def test_stop_strings_cut_the_answer(gemma):
    (g,) = gemma.generate([greedy(LONG, 12, stop=("\n4.",))])
    assert g.finish_reason == "stop" and g.text == " Wednesday"


def test_answers_made_by_hf_replay_from_the_cache(gemma, tmp_path):
    cache = ResponseCache(tmp_path)
    (made,) = CachedBackend(gemma, cache).generate([greedy(SHORT)])
    (replayed,) = ReplayBackend(cache, "embedded").generate([greedy(SHORT)])  # resolves the same identity
    assert replayed.cached and replayed.text == made.text


def test_chat_and_image_requests_on_the_text_only_base_model(gemma):
    import numpy as np

    # the GGUF carries no chat template (a base model): messages become a plain transcript
    chat = Request(messages=[{"role": "user", "content": "Name a fruit."}])
    assert gemma.render(chat) == "User: Name a fruit.\n\nAssistant:"
    with pytest.raises(ValueError, match="text-only model"):
        gemma.generate([Request(prompt="What happens next?", images=(np.zeros((8, 8, 3), np.uint8),), tag="clip")])
