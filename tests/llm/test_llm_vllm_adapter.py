"""How ``VLLMBackend`` turns requests into vLLM calls, checked against a recording stand-in for the ``vllm``
package (vllm's CUDA wheel cannot run here; the real engine is exercised by scripts/gpu_check_vllm.py on a GPU).
The stand-in only records arguments and echoes; it checks our mapping, not vLLM."""
from __future__ import annotations

import sys
import types
from dataclasses import dataclass, field

import numpy as np
import pytest

from mmreason.llm import Request, SamplingParams, derive_seed


@dataclass
class _Params:  # records vllm.SamplingParams(**kwargs)
    kwargs: dict = field(default_factory=dict)


class _RecordingLLM:
    chat_template = "{{ messages }}"

    def __init__(self, **kwargs):
        self.init_kwargs, self.calls = kwargs, []

    def get_tokenizer(self):
        return types.SimpleNamespace(chat_template=self.chat_template, image_token="<image>")

    def _outputs(self, kind, items, sampling_params):
        self.calls.append((kind, items, sampling_params))
        return [types.SimpleNamespace(prompt_token_ids=[1, 2, 3], outputs=[types.SimpleNamespace(
            text=f"{kind}:{i} STOP tail", token_ids=[5, 6], finish_reason="stop")]) for i in range(len(items))]

    def generate(self, prompts, sampling_params, use_tqdm):
        return self._outputs("generate", prompts, sampling_params)

    def chat(self, conversations, sampling_params, use_tqdm, add_generation_prompt):
        return self._outputs("chat", conversations, sampling_params)


@pytest.fixture
def fake_vllm(monkeypatch, tmp_path):
    vllm = types.ModuleType("vllm")
    vllm.LLM = _RecordingLLM
    vllm.SamplingParams = lambda **kw: _Params(kw)
    sp = types.ModuleType("vllm.sampling_params")
    sp.StructuredOutputsParams = lambda **kw: ("StructuredOutputsParams", kw)
    vllm.sampling_params = sp
    monkeypatch.setitem(sys.modules, "vllm", vllm)
    monkeypatch.setitem(sys.modules, "vllm.sampling_params", sp)
    (tmp_path / "model").mkdir()
    return tmp_path / "model"


def test_requests_map_to_generate_and_chat_in_order(fake_vllm):
    from mmreason.llm.vllm_backend import VLLMBackend

    llm = VLLMBackend(str(fake_vllm), tensor_parallel_size=2, max_model_len=1024)
    assert llm.llm.init_kwargs["tensor_parallel_size"] == 2 and llm.llm.init_kwargs["enable_prefix_caching"]
    frame = np.full((8, 8, 3), 200, np.uint8)
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    requests = [
        Request(messages=[{"role": "user", "content": "hi"}], tag="chat"),
        Request(prompt="p1", sampling=SamplingParams(temperature=0.5, top_k=7, seed=4, stop=(" STOP",)),
                sample_index=2, tag="p1"),
        Request(prompt="describe", images=(frame, frame), json_schema=schema, tag="vlm"),
        Request(messages=[{"role": "user", "content": [{"type": "text", "text": "what next?"},
                                                       {"type": "image"}]}], images=(frame,), tag="chat-vlm"),
    ]
    gens = llm.generate(requests)
    (kind1, prompts, params1), (kind2, chats, params2) = llm.llm.calls
    assert kind1 == "generate" and kind2 == "chat"
    # order kept; only p1 has the stop string, and its text is cut there
    assert [g.text for g in gens] == ["chat:0 STOP tail", "generate:0", "generate:1 STOP tail", "chat:1 STOP tail"]
    assert gens[1].finish_reason == "stop" and gens[1].num_output_tokens == 2 and gens[1].num_prompt_tokens == 3
    # per-request sampling: the shared seed rule, top_k only when on, stop strings, structured outputs
    assert params1[0].kwargs == {"temperature": 0.5, "top_p": 1.0, "max_tokens": 256, "seed": derive_seed(4, 2),
                                 "stop": [" STOP"], "top_k": 7}
    assert params1[1].kwargs["structured_outputs"] == ("StructuredOutputsParams", {"json": schema})
    # images: a completion prompt gets placeholders and multi_modal_data; a chat gets data-URL parts in place
    assert prompts[0] == {"prompt": "p1"}
    assert prompts[1]["prompt"] == "<image><image>\ndescribe" and len(prompts[1]["multi_modal_data"]["image"]) == 2
    assert chats[0] == [{"role": "user", "content": "hi"}]
    parts = chats[1][0]["content"]
    assert parts[0] == {"type": "text", "text": "what next?"} and parts[1]["type"] == "image_url"
    assert parts[1]["image_url"]["url"].startswith("data:image/png;base64,")


def test_models_without_a_chat_template_get_the_plain_transcript(fake_vllm, monkeypatch):
    from mmreason.llm.vllm_backend import VLLMBackend

    monkeypatch.setattr(_RecordingLLM, "chat_template", None)
    llm = VLLMBackend(str(fake_vllm))
    llm.generate([Request(messages=[{"role": "user", "content": "Name a fruit."}])])
    ((kind, prompts, _),) = llm.llm.calls
    assert kind == "generate" and prompts == [{"prompt": "User: Name a fruit.\n\nAssistant:"}]
