"""The content-addressed response cache: key golden value and sensitivity, hits/misses, resume after a kill,
atomic files, replay-only serving."""
from __future__ import annotations

import hashlib
import json
from dataclasses import replace

import numpy as np
import pytest

from mmreason.llm import (CachedBackend, CacheMissError, DeterministicBackend, ReplayBackend, Request, ResponseCache,
                          SamplingParams, key_for)
from mmreason.llm.base import LLMBackend
from mmreason.llm.cache import image_hash, model_slug

MODEL, REV = "google/gemma-3-270m@gguf-q4_k_m", "a5fd3b62230aa5ec"


def fixed_request(**changes) -> Request:
    base = dict(prompt="Action: pour\n1.",
                sampling=SamplingParams(temperature=0.7, top_p=0.9, top_k=40, max_tokens=64, seed=3, stop=("\n\n",)),
                template_id="subactions/subactions.completion", template_hash="ab" * 32, sample_index=2, tag="pour")
    base.update(changes)
    return Request(**base)


def test_golden_key_for_a_fixed_request():
    # Computed once when the cache format was fixed. If this fails, every stored answer would silently be
    # regenerated: bump CACHE_SCHEMA_VERSION deliberately and update the digest, never by accident.
    assert key_for(fixed_request(), MODEL, REV) == "13708c896f31199b676e86829c5ae8d5ab02b26a20b361caac712b0e24554c4f"


def test_key_is_sha256_of_the_documented_payload():
    payload = {"cache_schema_version": 1, "model_id": MODEL, "revision": REV, "prompt": "Action: pour\n1.",
               "messages": None, "images": [], "template_id": "subactions/subactions.completion",
               "template_hash": "ab" * 32,
               "sampling": {"temperature": 0.7, "top_p": 0.9, "top_k": 40, "max_tokens": 64, "seed": 3,
                            "stop": ["\n\n"]},
               "json_schema": None, "sample_index": 2}
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert key_for(fixed_request(), MODEL, REV) == hashlib.sha256(text.encode()).hexdigest()


@pytest.mark.parametrize("change", [
    {"template_hash": "cd" * 32}, {"template_id": "subactions/other"}, {"sample_index": 3},
    {"prompt": "Action: pour\n1. "}, {"json_schema": {"type": "array"}},
    {"sampling": SamplingParams(temperature=0.7, top_p=0.9, top_k=40, max_tokens=64, seed=4, stop=("\n\n",))},
    {"sampling": SamplingParams(temperature=0.7, top_p=0.9, top_k=40, max_tokens=65, seed=3, stop=("\n\n",))},
    {"sampling": SamplingParams(temperature=0.7, top_p=0.9, top_k=40, max_tokens=64, seed=3, stop=())},
    {"prompt": None, "messages": [{"role": "user", "content": "Action: pour\n1."}]},
])
def test_every_keyed_field_changes_the_key(change):
    assert key_for(fixed_request(**change), MODEL, REV) != key_for(fixed_request(), MODEL, REV)


def test_model_and_revision_change_the_key_but_tag_and_backend_do_not(tmp_path):
    r = fixed_request()
    assert key_for(r, "other/model", REV) != key_for(r, MODEL, REV)
    assert key_for(r, MODEL, "b" * 16) != key_for(r, MODEL, REV)
    assert key_for(fixed_request(tag="something else"), MODEL, REV) == key_for(r, MODEL, REV)
    # an answer written through one backend is served to another with the same model identity (vLLM -> CPU)
    cache = ResponseCache(tmp_path)
    CachedBackend(DeterministicBackend(model_id=MODEL, revision=REV), cache).generate([r])

    class OtherBackend(DeterministicBackend):
        name = "vllm"

    other = OtherBackend(model_id=MODEL, revision=REV)
    (gen,) = CachedBackend(other, cache).generate([r])
    assert gen.cached and other.calls == 0 and gen.backend == "deterministic"


def test_images_are_keyed_by_content_not_by_type():
    frame = np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    from PIL import Image

    assert image_hash(frame) == image_hash(Image.fromarray(frame))
    other = frame.copy()
    other[0, 0, 0] ^= 1
    k = key_for(fixed_request(images=(frame,)), MODEL, REV)
    assert k == key_for(fixed_request(images=(Image.fromarray(frame),)), MODEL, REV)
    assert k != key_for(fixed_request(images=(other,)), MODEL, REV)
    assert k != key_for(fixed_request(images=(frame, frame)), MODEL, REV)
    assert k != key_for(fixed_request(), MODEL, REV)


def test_second_call_is_all_hits_and_skips_the_backend(tmp_path):
    backend = DeterministicBackend()
    llm = CachedBackend(backend, ResponseCache(tmp_path))
    requests = [fixed_request(sample_index=i) for i in range(5)]
    first = llm.generate(requests)
    assert backend.calls == 5 and not any(g.cached for g in first)
    assert llm.stats == {"hits": 0, "misses": 5}
    second = llm.generate(requests)
    assert backend.calls == 5 and all(g.cached for g in second)
    assert [g.text for g in second] == [g.text for g in first]
    assert [g.cache_key for g in second] == [key_for(r, backend.model_id, backend.revision) for r in requests]
    assert llm.stats == {"hits": 5, "misses": 5}
    # the entry holds the request, the answer and where it came from
    entry = json.loads(ResponseCache(tmp_path).path_for(second[0].cache_key, backend.model_id).read_text())
    assert entry["request"]["prompt"] == "Action: pour\n1." and entry["request"]["tag"] == "pour"
    assert entry["response"]["text"] == first[0].text and entry["meta"]["backend"] == "deterministic"
    assert "mmreason" in entry["meta"]["versions"] and entry["meta"]["created"]


def test_entries_live_under_model_slug_and_key_prefix(tmp_path):
    backend = DeterministicBackend(model_id="org/My Model", revision="r1")
    (gen,) = CachedBackend(backend, ResponseCache(tmp_path)).generate([fixed_request()])
    path = tmp_path / "org--My_Model" / gen.cache_key[:2] / f"{gen.cache_key}.json"
    assert path.is_file() and model_slug("org/My Model") == "org--My_Model"
    assert ResponseCache(tmp_path).contains(gen.cache_key)
    assert ResponseCache(tmp_path).contains(gen.cache_key, "org/My Model")
    assert not ResponseCache(tmp_path).contains("0" * 64)


def test_duplicate_requests_in_one_call_are_generated_once(tmp_path):
    backend = DeterministicBackend()
    gens = CachedBackend(backend, ResponseCache(tmp_path)).generate([fixed_request(), fixed_request(tag="x")])
    assert backend.calls == 1 and gens[0].text == gens[1].text


class DiesAfter(LLMBackend):
    """Answers like the deterministic backend but raises once it has answered ``limit`` requests (a kill)."""

    name = "dies"

    def __init__(self, limit: int | None):
        self.inner, self.limit, self.model_id, self.revision = DeterministicBackend(), limit, "deterministic", "v1"
        self.answered = 0

    def generate(self, requests):
        if self.limit is not None and self.answered + len(requests) > self.limit:
            raise RuntimeError("killed")
        self.answered += len(requests)
        return self.inner.generate(requests)


def test_a_killed_run_resumes_without_regenerating(tmp_path):
    requests = [fixed_request(sample_index=i) for i in range(10)]
    dying = DiesAfter(limit=6)
    with pytest.raises(RuntimeError, match="killed"):
        CachedBackend(dying, ResponseCache(tmp_path), chunk_size=3).generate(requests)
    assert dying.answered == 6 and len(ResponseCache(tmp_path)) == 6  # two chunks were written before the kill
    rerun = DiesAfter(limit=None)
    gens = CachedBackend(rerun, ResponseCache(tmp_path), chunk_size=3).generate(requests)
    assert rerun.answered == 4 and sum(g.cached for g in gens) == 6
    assert [g.text for g in gens] == [g.text for g in DeterministicBackend().generate(requests)]


def test_writes_are_atomic_and_leave_no_temporary_files(tmp_path):
    CachedBackend(DeterministicBackend(), ResponseCache(tmp_path)).generate(
        [fixed_request(sample_index=i) for i in range(20)])
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) == 20 and all(p.suffix == ".json" and not p.name.startswith(".") for p in files)


def test_refresh_mode_regenerates_and_overwrites(tmp_path):
    cache = ResponseCache(tmp_path)
    CachedBackend(DeterministicBackend(responder=lambda r: "old"), cache).generate([fixed_request()])
    new = DeterministicBackend(responder=lambda r: "new")
    (gen,) = CachedBackend(new, cache, mode="refresh").generate([fixed_request()])
    assert new.calls == 1 and gen.text == "new" and not gen.cached
    (again,) = CachedBackend(DeterministicBackend(), cache).generate([fixed_request()])
    assert again.cached and again.text == "new"
    with pytest.raises(ValueError, match="mode"):
        CachedBackend(new, cache, mode="sometimes")


def test_replay_serves_hits_and_a_miss_names_the_request(tmp_path):
    cache = ResponseCache(tmp_path)
    made = CachedBackend(DeterministicBackend(model_id=MODEL, revision=REV), cache).generate([fixed_request()])
    replay = ReplayBackend(cache, MODEL, REV)
    (gen,) = replay.generate([fixed_request()])
    assert gen.cached and gen.text == made[0].text and gen.model_id == MODEL
    missing = fixed_request(prompt="Action: shoot bow\n1. " + "x" * 200, tag="shoot bow")
    with pytest.raises(CacheMissError) as err:
        replay.generate([fixed_request(), missing, replace(missing, sample_index=7)])
    message = str(err.value)
    key = key_for(missing, MODEL, REV)
    assert "shoot bow" in message and key in message and "Action: shoot bow\\n1. xxx" in message
    assert "and 1 more" in message and err.value.key == key and err.value.num_missing == 2
    assert "x" * 100 not in message  # the prompt is cut to 80 characters
    # a different revision misses everything
    with pytest.raises(CacheMissError):
        ReplayBackend(cache, MODEL, "other").generate([fixed_request()])


def test_a_corrupt_entry_names_its_file(tmp_path):
    cache = ResponseCache(tmp_path)
    (gen,) = CachedBackend(DeterministicBackend(), cache).generate([fixed_request()])
    path = cache.path_for(gen.cache_key, "deterministic")
    path.write_text("{not json")
    with pytest.raises(ValueError, match=str(path.name)):
        CachedBackend(DeterministicBackend(), cache).generate([fixed_request()])
