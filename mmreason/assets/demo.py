"""The main job (``make demo`` / ``mmreason demo``): on a CPU machine, generate Task-Adapter++ sub-actions and the
STDD action knowledge graph for the bundled demo classes with the embedded LLM, embed them with the embedded
MiniLM, write the curated assets under ``knowledge/demo/`` and print a sample. A second run is served from
the response cache in seconds.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from mmreason.assets.build import generate_assets
from mmreason.assets.io import load_assets, load_embeddings

DEMO_DATASET = "demo"


def run_demo(knowledge_root: Path = Path("knowledge"), cache_dir=None, backend: str = "hf", model: str = "embedded",
             echo=print) -> dict:
    start = time.perf_counter()
    llm = None
    if backend not in ("replay", "deterministic"):  # load the model once for both assets
        from mmreason.llm import make_backend

        llm = make_backend(backend, model=model, **({"batch_size": 16} if backend == "hf" else {}))
    summaries = {}
    for asset in ("subactions", "action_graph"):
        summaries[asset] = generate_assets(asset, DEMO_DATASET, backend=backend, model=model, llm=llm,
                                           knowledge_root=knowledge_root, cache_dir=cache_dir, echo=echo,
                                           batch_size=16)
    elapsed = time.perf_counter() - start

    subactions = load_assets("subactions", DEMO_DATASET, knowledge_root)
    graphs = load_assets("action_graph", DEMO_DATASET, knowledge_root)
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
    emb = load_embeddings("subactions", DEMO_DATASET, knowledge_root) if subactions else None
    if emb is not None:
        echo(f"[embeddings] {len(emb['texts'])} sub-action sentences embedded with {emb['model']} "
             f"-> {tuple(emb['vectors'].shape)}")
    totals = {k: sum(s[k] for s in summaries.values()) for k in ("generated", "cached", "failed")}
    echo(f"\n{json.dumps({**totals, 'seconds': round(elapsed, 1), 'folder': str(Path(knowledge_root) / DEMO_DATASET)})}")
    return {"summaries": summaries, "seconds": elapsed}
