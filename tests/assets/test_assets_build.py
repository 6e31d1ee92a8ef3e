"""Asset builder: records and manifests, cache reuse, prompt edits, resume after a kill, retries and failures,
selective regeneration, dry runs and replay - with the deterministic test backend."""
from __future__ import annotations

import re
import shutil

import pytest

from mmreason.assets.build import generate_assets
from mmreason.assets.preflight import GenerationCheckError
from mmreason.assets.io import load_assets, load_manifest
from mmreason.assets.prompts import PROMPTS_ROOT
from mmreason.llm import CacheMissError, DeterministicBackend

CLASSES = ["brush hair", "ride bike", "pour", "shoot bow"]


class RecordingBackend(DeterministicBackend):
    """The deterministic test backend, keeping every request it answered."""

    def __init__(self, responder):
        super().__init__(responder=responder)
        self.requests = []

    def generate(self, requests):
        self.requests.extend(requests)
        return super().generate(requests)


def _class_of(request) -> str:
    return request.tag


def subaction_answer(request) -> str:
    """A well-formed completion: the template already ends with '1.'."""
    c = _class_of(request)
    return f" Getting ready to {c}.\n2. Doing the {c} movement.\n3. Finishing the {c}."


GRAPH = (" hand, tool, object, table, floor, chair\n"
         "Object relations:\n- <hand, holds, tool>\n- <tool, touches, object>\n"
         "Action-object relations:\n- <{c}, involves, tool>\n- <{c}, needs, hand>\n"
         "Sub-actions:\n- picking up the tool\n- using the tool\n- putting the tool down\n"
         "Action relations:\n- <{c}, starts with, picking up the tool>\n"
         "- <picking up the tool, precedes, using the tool>\n- <using the tool, precedes, putting the tool down>")


def graph_answer(request) -> str:
    if request.template_id.startswith("action_graph/graph"):
        return GRAPH.format(c=_class_of(request))
    fact = re.search(r"Fact: <([^>]*)>\nPhrase:$", request.prompt).group(1)
    head, relation, tail = [p.strip() for p in fact.split(",")]
    return f" where {head} {relation} {tail}"


def build(tmp_path, asset, responder, **kw):
    backend = kw.pop("llm", None) or RecordingBackend(responder)
    summary = generate_assets(asset, "toy", classes=kw.pop("classes", CLASSES), llm=backend,
                              knowledge_root=tmp_path / "knowledge", embed=kw.pop("embed", False), progress=False,
                              echo=lambda s: None, **kw)
    return summary, backend


def test_subactions_records_manifest_and_cache_reuse(tmp_path):
    summary, backend = build(tmp_path, "subactions", subaction_answer, batch_size=3)
    assert summary["generated"] == 4 and summary["cached"] == 0 and summary["failed"] == 0
    assert backend.calls == 4
    records = load_assets("subactions", "toy", tmp_path / "knowledge")
    assert [r["class"] for r in records] == CLASSES
    assert records[1]["subactions"] == ["Getting ready to ride bike.", "Doing the ride bike movement.",
                                        "Finishing the ride bike."]
    assert all(len(r["sources"]) == 1 and len(r["sources"][0]) == 64 for r in records)
    manifest = load_manifest("subactions", "toy", tmp_path / "knowledge")
    assert manifest["counts"]["records"] == 4 and manifest["failures"] == []
    assert set(manifest["templates"]) == {"subactions/subactions.completion"}
    # a second run is served from the cache: the backend is not called again
    summary2, backend2 = build(tmp_path, "subactions", subaction_answer)
    assert summary2["generated"] == 0 and summary2["cached"] == 4 and backend2.calls == 0
    assert load_assets("subactions", "toy", tmp_path / "knowledge") == records


def test_action_graph_two_stages_and_prompt_edit_invalidates_exactly_its_entries(tmp_path):
    summary, backend = build(tmp_path, "action_graph", graph_answer, classes=CLASSES[:2])
    triples_per_class = 2 + 2 + 3
    assert summary["failed"] == 0 and backend.calls == 2 + 2 * triples_per_class
    (r, _) = load_assets("action_graph", "toy", tmp_path / "knowledge")
    assert r["obj_en_li"] == ["hand", "tool", "object", "table", "floor", "chair"]
    assert r["act_rel_source"] == "llm"
    assert r["act_rel_triples"][0] == ["brush hair", "starts with", "picking up the tool"]
    assert r["xprompt_oo"] == ["where hand holds tool", "where tool touches object"]
    assert r["xprompt_aa"][1] == "where picking up the tool precedes using the tool"

    # edit only the stage-2 template: stage-1 answers stay cached, every stage-2 answer is regenerated
    prompts = tmp_path / "prompts"
    shutil.copytree(PROMPTS_ROOT, prompts)
    path = prompts / "action_graph" / "continuation.completion.txt"
    path.write_text(path.read_text().replace("Each fact", "Every fact"))
    summary2, backend2 = build(tmp_path, "action_graph", graph_answer, classes=CLASSES[:2], prompts_root=prompts)
    assert summary2["cached"] == 2 and summary2["generated"] == 2 * triples_per_class
    assert backend2.calls == 2 * triples_per_class


def test_killed_generation_resumes_without_regenerating(tmp_path):
    class Killed(RuntimeError):
        pass

    calls = {"n": 0}

    def dies_after_two_batches(request):
        calls["n"] += 1
        if calls["n"] > 4:
            raise Killed("power cut")
        return subaction_answer(request)

    classes = [f"action {i}" for i in range(7)]
    with pytest.raises(Killed):
        build(tmp_path, "subactions", dies_after_two_batches, classes=classes, batch_size=2)
    summary, backend = build(tmp_path, "subactions", subaction_answer, classes=classes, batch_size=2)
    assert summary["cached"] == 4 and summary["generated"] == 3 and backend.calls == 3
    assert len(load_assets("subactions", "toy", tmp_path / "knowledge")) == 7


def test_bad_answers_are_retried_and_failures_recorded(tmp_path):
    def flaky(request):
        c = _class_of(request)
        if c == "pour" and request.sample_index == 0:
            return " only one step"                       # wrong count: retried
        if c == "shoot bow":
            return " no list here at all\n\nAction: x"       # never parses
        return subaction_answer(request)

    summary, backend = build(tmp_path, "subactions", flaky, max_attempts=3)
    assert summary["failed"] == 1 and summary["records"] == 3
    assert backend.calls == 4 + 1 + 2                      # pour retried once, shoot bow twice
    manifest = load_manifest("subactions", "toy", tmp_path / "knowledge")
    (failure,) = manifest["failures"]
    assert failure["id"] == "shoot bow"
    attempts = failure["failed_requests"][0]["attempts"]
    assert [a["sample_index"] for a in attempts] == [0, 1, 2]
    assert "expected exactly 3 sub-actions" in attempts[0]["error"]
    assert manifest["retried"]["pour"][0]["attempts"][0]["text"] == " only one step"
    # retries sample: the retried requests were not greedy
    temps = {(r.tag, r.sample_index): r.sampling.temperature for r in backend.requests}
    assert temps[("pour", 0)] == 0.0 and temps[("pour", 1)] > 0.0


def test_only_and_force_regenerate_selectively(tmp_path):
    build(tmp_path, "subactions", subaction_answer)
    before = {r["id"]: r for r in load_assets("subactions", "toy", tmp_path / "knowledge")}

    def changed(request):
        return " New first.\n2. New second.\n3. New third."

    summary, backend = build(tmp_path, "subactions", changed, only=["pour"], force=True)
    assert backend.calls == 1 and summary["generated"] == 1
    after = {r["id"]: r for r in load_assets("subactions", "toy", tmp_path / "knowledge")}
    assert after["pour"]["subactions"] == ["New first.", "New second.", "New third."]
    assert after["ride bike"] == before["ride bike"] and list(after) == CLASSES
    with pytest.raises(GenerationCheckError, match="did you mean 'pour'"):
        build(tmp_path, "subactions", changed, only=["poor"])


def test_dry_run_prints_prompts_and_counts(tmp_path):
    build(tmp_path, "subactions", subaction_answer, classes=CLASSES[:2])
    lines = []
    backend = DeterministicBackend(responder=subaction_answer)
    summary = generate_assets("subactions", "toy", classes=CLASSES, llm=backend, dry_run=True,
                              knowledge_root=tmp_path / "knowledge", echo=lines.append, progress=False)
    assert backend.calls == 0
    assert summary["cached"] == 2 and summary["uncached_requests"] == 2
    text = "\n".join(lines)
    assert "[HIT ] brush hair" in text and "[MISS] pour" in text and "Action: shoot bow\n1." in text


def test_replay_serves_cached_answers_and_fails_on_a_miss(tmp_path):
    from mmreason.llm import ReplayBackend, ResponseCache
    from mmreason.llm.paths import response_cache_dir

    summary, backend = build(tmp_path, "subactions", subaction_answer, classes=CLASSES[:2])
    replay = ReplayBackend(ResponseCache(response_cache_dir()), backend.model_id, backend.revision)
    summary2, _ = build(tmp_path, "subactions", None, classes=CLASSES[:2], llm=replay)
    assert summary2["cached"] == 2
    with pytest.raises(CacheMissError, match="pour"):
        build(tmp_path, "subactions", None, classes=CLASSES[:3], llm=replay)


def test_embeddings_written_with_the_packaged_minilm(tmp_path):
    import numpy as np

    from mmreason.assets.io import load_embeddings

    build(tmp_path, "subactions", subaction_answer, classes=CLASSES[:2], embed=True)
    emb = load_embeddings("subactions", "toy", tmp_path / "knowledge")
    assert emb["vectors"].shape == (6, 384) and emb["ids"][:3] == ["brush hair"] * 3
    assert np.allclose(np.linalg.norm(emb["vectors"], axis=1), 1.0, atol=1e-4)
    manifest = load_manifest("subactions", "toy", tmp_path / "knowledge")
    assert "minilm" in manifest["embedder"].lower()


def test_intentions_send_real_clip_frames_and_cache_per_clip(tmp_path, real_video_paths):
    from mmreason.video import probe

    path = str(real_video_paths["bikes"])
    duration = probe(path).duration
    clips = [{"id": "clip_a", "video": path, "start_s": 0.0, "end_s": duration / 2, "observed": ["take bike"]},
             {"id": "clip_b", "video": path, "start_s": duration / 2, "end_s": duration, "observed": []}]

    def intention(request):
        assert len(request.images) == 4 and request.images[0].dtype.name == "uint8"
        return " ride the bike down the street." if request.tag == "clip_a" else " no"

    summary, backend = build(tmp_path, "intentions", intention, items=clips, classes=None, num_frames=4,
                             max_attempts=2)
    assert summary["failed"] == 1 and backend.calls == 1 + 2
    (record,) = load_assets("intentions", "toy", tmp_path / "knowledge")
    assert record["id"] == "clip_a" and record["intention"] == "The person intends to ride the bike down the street."
    assert record["observed"] == ["take bike"]
    assert "The actions seen so far are: take bike." in backend.requests[0].prompt
    again, backend2 = build(tmp_path, "intentions", intention, items=clips, classes=None, num_frames=4,
                            max_attempts=2)
    assert backend2.calls == 0 and again["cached"] == 3   # answers are cached per clip (frames are in the key)


def test_label_semantics_descriptions(tmp_path):
    summary, _ = build(tmp_path, "label_semantics",
                       lambda r: f" A person does the {r.tag} movement with their body.", classes=CLASSES[:2])
    records = load_assets("label_semantics", "toy", tmp_path / "knowledge")
    assert records[0]["description"] == "A person does the brush hair movement with their body."
