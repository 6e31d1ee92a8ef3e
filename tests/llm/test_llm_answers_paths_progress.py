"""Rejecting unfinished or copied answers, local model paths treated as paths, the deferred backend, progress
per answered request (HF rows as they stop), the response-cache location, and the base <-> embedded import order."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from mmreason.llm import DeferredBackend, DeterministicBackend, Request, ResponseCache, answer_progress
from mmreason.llm.base import check_model, resolve_model_identity
from mmreason.llm.parsing import copied_from, drop_unfinished_line, ends_mid_sentence

LLM = Path(__file__).resolve().parents[2] / "mmreason" / "llm"


# ------------------------------------------------------------------------------------- unfinished / copied

@pytest.mark.parametrize("text, unfinished", [
    ("Lowering the glass back onto the.", True),       # cut after an article
    ("A person holds the cup and", True),               # cut after a conjunction
    ("Swinging the arm forward,", True),
    ("where the knife cuts into", True),
    ("Turning the water on.", False),                    # a particle ends a phrasal verb: complete
    ("Picking it up", False),
    ("which uses a glass", False),
    ("The person intends to ride the bike down the street.", False),
])
def test_ends_mid_sentence(text, unfinished):
    assert ends_mid_sentence(text) is unfinished


def test_drop_unfinished_line_keeps_only_complete_lines():
    assert drop_unfinished_line("1. Reach.\n2. Grip.\n3. Pull the han") == "1. Reach.\n2. Grip."
    assert drop_unfinished_line("A person holds the cup and sl") == ""


def test_copied_from_finds_verbatim_and_swapped_object_copies():
    examples = ["Holding the ball and raising the arm back.", "Swinging the arm forward and releasing the ball.",
                "Each human action is broken into short sub-actions: getting ready, doing the main movement."]
    answer = ["Holding the bow and raising the arm back.",    # the example with one word swapped
              "Doing the main movement.",                      # the instructions, word for word
              "Drawing the string to the cheek.",              # an answer
              "Getting ready."]                                # too short to judge (2 words)
    assert copied_from(answer, examples) == answer[:2]
    assert copied_from(["which uses a cup"], ["which uses a glass"]) == []   # 3 of 4 words: not a copy


# ------------------------------------------------------------------------------------------ model paths

def test_local_model_paths_are_paths_never_hub_ids(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("./my-model", "../my-model", str(tmp_path / "absent"), "~/no-such-model-folder-xyz"):
        with pytest.raises(FileNotFoundError, match="not found"):
            resolve_model_identity(name)                # before: ("./my-model", "main"), a hub id
    (tmp_path / "weights.gguf").write_bytes(b"x")
    with pytest.raises(ValueError, match="is a file"):
        resolve_model_identity("./weights.gguf")
    with pytest.raises(ValueError, match="neither a local folder nor a Hugging Face model id"):
        resolve_model_identity("my model")
    (tmp_path / "m").mkdir()
    assert resolve_model_identity("./m") == (str((tmp_path / "m").resolve()), "local")
    with pytest.raises(FileNotFoundError, match="no config.json"):
        check_model("./m")                              # a folder without weights: no load attempted
    check_model("./m", load=False)                      # the replay backend needs only the identity
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(FileNotFoundError, match="not in the local Hugging Face cache"):
        check_model("org/not-downloaded")


def test_deferred_backend_builds_on_the_first_miss_only(tmp_path, monkeypatch):
    from mmreason.registry import BACKENDS

    built = []

    def factory(model, **kwargs):
        built.append(model)
        model_id, revision = resolve_model_identity(model)
        return DeterministicBackend(responder=lambda r: "an answer", model_id=model_id, revision=revision)

    monkeypatch.setitem(BACKENDS._items, "counting", factory)
    (tmp_path / "m").mkdir()
    from mmreason.llm import CachedBackend

    lazy = DeferredBackend("counting", str(tmp_path / "m"))
    assert built == [] and lazy.model_id == str((tmp_path / "m").resolve())   # identity known without a build
    cached = CachedBackend(lazy, ResponseCache(tmp_path / "cache"))
    cached.generate([Request(prompt="p")])
    assert len(built) == 1
    again = CachedBackend(DeferredBackend("counting", str(tmp_path / "m")), ResponseCache(tmp_path / "cache"))
    assert again.generate([Request(prompt="p")])[0].cached and len(built) == 1   # all hits: never built


# ------------------------------------------------------------------------------------------------ progress

def test_hf_rows_are_reported_the_step_each_one_stops():
    """Three rows in one batch: EOS at step 2, a stop string at step 3, max_tokens at step 4."""
    from mmreason.llm.hf import _PerRowStop
    from mmreason.llm.types import SamplingParams

    eos, prompt_len = 1, 2
    words = {5: "a", 6: "b", 7: "STOP", 1: "", 0: ""}
    rows = [[5, 1, 0, 0], [5, 6, 7, 0], [5, 6, 5, 6]]           # generated tokens per row, step by step
    samplings = [SamplingParams(max_tokens=8), SamplingParams(max_tokens=8, stop=("STOP",)), SamplingParams(max_tokens=4)]
    stopper = _PerRowStop(samplings, prompt_len, lambda ids: "".join(words[int(t)] for t in ids), [eos])
    reports = []
    with answer_progress(lambda n: reports.append((step, n))):
        for step in range(1, 5):
            ids = torch.tensor([[9, 9] + r[:step] for r in rows])
            stopper(ids, None)
        stopper.report_rest()
    assert reports == [(2, 1), (3, 1), (4, 1)]


def test_cache_hits_and_deterministic_answers_report_one_by_one(tmp_path):
    from mmreason.llm import CachedBackend

    seen = []
    llm = CachedBackend(DeterministicBackend(), ResponseCache(tmp_path))
    llm.generate([Request(prompt="a")])
    with answer_progress(seen.append):
        llm.generate([Request(prompt="a"), Request(prompt="b"), Request(prompt="c")])
    assert seen == [1, 1, 1]   # the hit at once, then each generated answer


def test_response_cache_defaults_to_mmreason_cache(tmp_path, monkeypatch):
    from mmreason.llm.paths import response_cache_dir

    monkeypatch.setenv("MMREASON_CACHE", str(tmp_path / "c"))
    assert response_cache_dir() == tmp_path / "c" / "llm_responses"
    assert response_cache_dir(tmp_path / "mine") == tmp_path / "mine"


# ------------------------------------------------------------------------------------------- import order

def _imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):   # top-level and function-level imports alike
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


def test_base_and_embedded_do_not_import_each_other_back():
    assert "mmreason.llm.embedded" in _imports(LLM / "base.py")
    assert not any(m.startswith("mmreason.llm.base") for m in _imports(LLM / "embedded.py"))
    assert not any(m.startswith("mmreason") for m in _imports(LLM / "paths.py"))   # the leaf both read
