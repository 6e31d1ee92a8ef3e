"""LLM/VLM text assets: specs, the cached builder, curated files under ``knowledge/``, and official importers.

Training and evaluation read curated assets (``knowledge/<dataset>/<asset>.jsonl`` + manifest) through
:func:`mmreason.assets.io.load_assets`, never the LLM.
"""
from mmreason.registry import Registry

ASSETS = Registry("asset")
ASSETS.register_lazy("subactions", "mmreason.assets.subactions:SUBACTIONS",
                     help="Task-Adapter++: S chronologically ordered sub-action sentences per class")
ASSETS.register_lazy("action_graph", "mmreason.assets.action_graph:ACTION_GRAPH",
                     help="STDD: action semantic knowledge graph per class and its prompt continuations")
ASSETS.register_lazy("intentions", "mmreason.assets.intentions:INTENTIONS",
                     help="ICVL: a VLM's one-sentence intention for each observed clip")
ASSETS.register_lazy("label_semantics", "mmreason.assets.label_semantics:LABEL_SEMANTICS",
                     help="CORM / VS-TransGRU: class descriptions and their embeddings")
