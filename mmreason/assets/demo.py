"""The main job (``make demo`` / ``mmreason demo``): on a CPU machine, generate Task-Adapter++ sub-actions and the
STDD action knowledge graph for the bundled demo classes with the embedded LLM, embed them with the embedded
MiniLM, write the curated assets under ``<knowledge root>/demo/`` and print a sample. A second run is served from
the response cache in seconds, without loading the LLM.

The knowledge root and the response cache resolve as everywhere (``assets.paths``): ``$MMREASON_KNOWLEDGE`` (or
the checkout's ``knowledge/``, or ``$MMREASON_CACHE/knowledge`` in an installed wheel) and
``$MMREASON_CACHE/llm_responses``, so the demo runs the same from any working directory.
"""
from __future__ import annotations

import json
import os
import time

from mmreason.assets.build import generate_many
from mmreason.assets.io import load_assets, load_embeddings
from mmreason.assets.paths import knowledge_root as resolve_root

DEMO_DATASET = "demo"


def run_demo(knowledge_root: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None,
             backend: str = "hf", model: str = "embedded", progress: bool = True, echo=print) -> dict:
    start = time.perf_counter()
    root = resolve_root(knowledge_root)
    # one model for both assets, loaded only if an answer is not cached yet
    summaries = generate_many(["subactions", "action_graph"], [DEMO_DATASET], backend=backend, model=model,
                              knowledge_root=root, cache_dir=cache_dir, echo=echo, batch_size=16, progress=progress,
                              backend_kwargs={"batch_size": 16} if backend == "hf" else None)
    summaries = {s["asset"]: s for s in summaries}
    elapsed = time.perf_counter() - start

    subactions = load_assets("subactions", DEMO_DATASET, root)
    graphs = load_assets("action_graph", DEMO_DATASET, root)
    echo("\n=== sample ===")
    if subactions:
        r = subactions[0]
        echo(f"[subactions] {r['class']}:")
        for i, s in enumerate(r["subactions"], 1):
            echo(f"  {i}. {s}")
    if graphs:
        g = graphs[0]
        echo(f"[action_graph] {g['class']}: objects = {', '.join(g['obj_en_li'])}")
        for kind in ("xprompt_oo", "xprompt_ao", "xprompt_aa"):
            for x in g[kind][:2]:
                echo(f"  This is an example of {g['class']}, {x}.")
    emb = load_embeddings("subactions", DEMO_DATASET, root) if subactions else None
    if emb is not None:
        echo(f"[embeddings] {len(emb['texts'])} sub-action sentences embedded with {emb['model']} "
             f"-> {tuple(emb['vectors'].shape)}")
    totals = {k: sum(s[k] for s in summaries.values()) for k in ("generated", "cached", "failed")}
    echo(f"\n{json.dumps({**totals, 'seconds': round(elapsed, 1), 'folder': str(root / DEMO_DATASET)})}")
    return {"summaries": summaries, "seconds": elapsed}
