"""A non-editable wheel install runs ``mmreason demo`` and ``mmreason generate --backend replay`` from a folder
outside the checkout: prompts and class lists ship as package data, and no state depends on the working directory.

The wheel is built from a copy of the sources (nothing is written into the checkout) and installed into a fresh
venv that sees the project venv's dependencies through a ``.pth`` line (no torch download) but not the checkout.
The demo's LLM answers are prepared in the response cache beforehand, as a first demo run would leave them
(the deterministic test backend writes well-formed answers under the embedded Gemma's model id and revision), so
the demo runs its real code path (CLI, prompts read from the wheel, cache keys, the hf backend deferred until a
miss, MiniLM embeddings, curated files) without 2.5 minutes of Gemma on CPU: a key computed differently from the
wheel's prompts would miss, load Gemma and fail the ``generated == 0`` assertion.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def subaction_answer(request) -> str:
    return f" Getting ready to {request.tag}.\n2. Doing the {request.tag} movement.\n3. Finishing the {request.tag}."


def graph_answer(request) -> str:
    if request.template_id.startswith("action_graph/graph"):
        c = request.tag
        return (" hand, tool, object, table, floor, chair\nObject relations:\n- <hand, holds, tool>\n"
                f"Action-object relations:\n- <{c}, involves, tool>\nSub-actions:\n- picking up the tool\n"
                f"- using the tool\nAction relations:\n- <{c}, starts with, picking up the tool>")
    head, relation, tail = re.search(r"Fact: <([^>]*)>\nPhrase:$", request.prompt).group(1).split(", ")
    return f" where {head} {relation} {tail}"


def build_wheel(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    ignore = shutil.ignore_patterns("__pycache__", ".llm_cache", ".embedding_cache")
    for folder in ("mmreason", "prompts", "knowledge"):
        shutil.copytree(REPO / folder, src / folder, ignore=ignore)
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(REPO / name, src / name)
    (src / "knowledge" / "demo" / "subactions.jsonl").write_text('{"id": "generated, must not ship"}\n')
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
                    "-w", str(dist), str(src)], check=True, capture_output=True, text=True)
    (wheel,) = dist.glob("mmreason-*.whl")
    return wheel


def test_wheel_install_runs_demo_and_replay_from_another_folder(tmp_path):
    from mmreason.assets.build import generate_many
    from mmreason.llm import DeterministicBackend
    from mmreason.llm.embedded import EMBEDDED_MODEL_ID, embedded_revision

    wheel = build_wheel(tmp_path)
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped_lists = {f"mmreason/knowledge/{p.parent.name}/classes.txt" for p in REPO.glob("knowledge/*/classes.txt")}
    assert {n for n in names if n.startswith("mmreason/knowledge/")} == shipped_lists   # class lists only
    assert {f"mmreason/prompts/{p.relative_to(REPO / 'prompts')}" for p in (REPO / "prompts").glob("*/*.*")} <= names

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "project_dependencies.pth").write_text("\n".join(sorted(deps)) + "\n")
    subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)], check=True,
                   capture_output=True, text=True)

    cache = tmp_path / "state"
    generate_many(["subactions", "action_graph"], ["demo"], llm=DeterministicBackend(
                      responder=lambda r: subaction_answer(r) if r.template_id.startswith("subactions") else
                      graph_answer(r), model_id=EMBEDDED_MODEL_ID, revision=embedded_revision()),
                  cache_dir=cache / "llm_responses", knowledge_root=tmp_path / "scratch", embed=False,
                  progress=False, echo=lambda s: None)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MMREASON_KNOWLEDGE", "MMREASON_PROMPTS")}
    env.update(MMREASON_CACHE=str(cache), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", TQDM_DISABLE="1")

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(venv / "bin" / args[0]), *args[1:]], cwd=elsewhere, env=env, capture_output=True,
                              text=True, timeout=300)

    where = run("python", "-c", "import mmreason, mmreason.assets.paths as p; "
                                "print(mmreason.__file__); print(p.shipped_dir('prompts')); print(p.knowledge_root())")
    module, prompts, knowledge = where.stdout.split()
    assert module.startswith(str(venv)) and prompts.startswith(str(venv)), where.stdout
    assert knowledge == str(cache / "knowledge")   # an installed wheel writes under $MMREASON_CACHE, not ./

    demo = run("mmreason", "demo")
    assert demo.returncode == 0, demo.stderr[-3000:]
    totals = json.loads(demo.stdout.strip().splitlines()[-1])
    assert totals["generated"] == 0 and totals["cached"] > 0 and totals["failed"] == 0, totals
    assert "[subactions] brush hair:" in demo.stdout and "Getting ready to brush hair." in demo.stdout
    records = [json.loads(line) for line in (cache / "knowledge" / "demo" / "subactions.jsonl").read_text().splitlines()]
    assert [r["id"] for r in records] == ["brush hair", "ride bike", "shoot bow", "climb stairs"]
    assert (cache / "knowledge" / "demo" / "subactions.embeddings.npz").is_file()
    assert not (cache / "models").exists()   # every answer came from the cache: Gemma was never converted or loaded

    replay = run("mmreason", "generate", "subactions", "--dataset", "demo", "--backend", "replay", "--no-embed")
    assert replay.returncode == 0, replay.stderr[-3000:]
    summary = json.loads(replay.stdout[replay.stdout.index("{"):])
    assert summary["cached"] == 4 and summary["generated"] == 0 and summary["missing"] == []
    miss = run("mmreason", "generate", "label_semantics", "--dataset", "demo", "--backend", "replay")
    assert miss.returncode == 2 and "no cached answer" in miss.stderr
    assert list(elsewhere.iterdir()) == []   # nothing was written to the working directory
