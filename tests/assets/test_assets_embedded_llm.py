"""The real embedded LLM (Gemma 3 270M, converted from the PyPI GGUF) generating sub-actions that parse."""
from __future__ import annotations

import pytest

from mmreason.assets.build import generate_assets
from mmreason.assets.io import load_assets, load_manifest

pytestmark = pytest.mark.slow


def test_embedded_llm_generates_subactions_that_parse(tmp_path):
    from mmreason.llm import HFBackend

    llm = HFBackend("embedded", device="cpu", batch_size=2)
    summary = generate_assets("subactions", "toy", classes=["shoot bow", "ride horse"], llm=llm,
                              knowledge_root=tmp_path, embed=False, progress=False, echo=lambda s: None,
                              max_attempts=4)
    manifest = load_manifest("subactions", "toy", tmp_path)
    assert summary["failed"] == 0, manifest["failures"]
    records = load_assets("subactions", "toy", tmp_path)
    assert [r["class"] for r in records] == ["shoot bow", "ride horse"]
    for r in records:
        assert len(r["subactions"]) == 3 and len({s.lower() for s in r["subactions"]}) == 3
        assert all(s.endswith(".") and len(s.split()) >= 2 for s in r["subactions"])
    assert manifest["model_id"] == "google/gemma-3-270m@gguf-q4_k_m"
