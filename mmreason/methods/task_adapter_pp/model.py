"""Task-Adapter++ (Cao et al., arXiv 2505.06002): Task-Adapter + LLM sub-actions + order-aware cross-modal alignment.

Implemented (paper abstract; details from the authors' released code: ``module_adapter.py``,
``module_sem_adapter.py``, ``models.py``):

* visual branch = Task-Adapter (:mod:`mmreason.methods.task_adapter.model`), per-frame features ``[B, T, E]``;
* text branch = frozen CLIP text tower with **semantic order adapters** in its last ``L`` layers
  (``text_adapter_layers``: 8 for Kinetics/UCF/HMDB, 2 for SSv2). An adapted text block on the ``S``
  sub-action prompts of each of the episode's ``N`` classes, tokens ``x`` ``[(N S), C, W]``:
  1. ``x += attn(ln_1 x, causal mask)`` (frozen);
  2. order attention: ``(n s) c w -> (n c) s w`` — at each token position the S sub-action prompts of one
     class attend to each other (frozen ``ln_1`` + attention, no mask); ``x += order_adapter(...)``
     (bottleneck ``W -> W/4 -> W``, 512 -> 128 -> 512, GELU, ``fc2`` zero-initialised, no inner skip);
  3. ``x += mlp(ln_2 x)`` (frozen);
  EOT token -> ln_final -> text_projection gives sub-action features ``[N, S, E]``;
* prompts ``"A video of action about {class}: {sub-action}"``, the class named as the sub-action file names it;
* fine-grained alignment: query frame features ``q_t``; transition features over ``t = 0..T-2``
  ``a_t = LN(softmax(q_t q_{t+1}^T / sqrt(E)) q_{t+1}) + q_{t+1}`` where the attention runs **across the
  episode's query videos** (the released code's batch axis) and ``LN`` is a trainable ``nn.LayerNorm(E)`` for
  SSv2-Full (``transition_norm``; the identity elsewhere, as released); sub-action stage ``i`` is matched to an
  overlapping window of transitions (released: T=8, S=3 -> windows [0-2], [2-4], [4-6]); ``sem = mean_i
  mean_{j in window i} cos(a_j, e_{i,c})``;
* ``vis = cos(mean_t q, mean_{shots,t} s_c)``; logits ``= vis * sem * 64``; cross-entropy.

Released-code switches (``paper`` = the method as described, the default; ``released`` = what ``run.py`` computes,
which produced the published numbers): ``sem_orientation`` (:func:`combine_scores`: the released code multiplies
``vis`` [query x class] with ``sem`` [class x query] without a transpose), ``task_attention_chunks`` (the released
``nn.DataParallel`` over ``num_gpus`` splits each support/query call, :func:`~mmreason.methods.task_adapter.model.
chunked_call`), ``data.frame_sampling``. Released checkpoints convert with :mod:`.released`.

Generalisations and reconstructions (config fields): windows for any ``T`` and ``S`` (:func:`stage_windows`:
``S`` equal windows of ``ceil((T-2)/S) + 1`` transitions, evenly placed, consecutive windows sharing their
border — exactly the released windows at T=8, S=3); the text tower and the cosine scores run in fp32 (the
released code casts them to fp16 on GPU).
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mmreason.clip.adapters import BottleneckAdapter, inject_lora
from mmreason.clip.towers import CLIPTextTower, block_attention, block_forward, block_mlp
from mmreason.methods.task_adapter.model import (build_towers_and_vision, episode_accuracy, episode_features,
                                                 prototype_cosine)


class OrderAdaptedText(nn.Module):
    """Frozen CLIP text tower with semantic order adapters (or LoRA) in its last ``adapter_layers`` blocks."""

    def __init__(self, tower: CLIPTextTower, adapter_layers: int, ratio: float = 0.25, adapter: str = "task",
                 lora: dict | None = None):
        super().__init__()
        if not 0 <= adapter_layers <= tower.num_layers:
            raise ValueError(f"text_adapter_layers={adapter_layers} but the text tower has {tower.num_layers} blocks")
        self.tower = tower
        for p in tower.parameters():
            p.requires_grad_(False)
        self.adapted = list(range(tower.num_layers - adapter_layers, tower.num_layers))
        self.order_adapters = nn.ModuleDict()
        if adapter == "task":
            for i in self.adapted:
                self.order_adapters[str(i)] = BottleneckAdapter(tower.width, ratio, skip=False, zero_init=True)
        elif adapter == "lora":
            lora = dict(lora or {})
            inject_lora(tower.blocks, self.adapted, lora.pop("targets"), where="text.blocks", **lora)
        else:
            raise ValueError(f"unknown adapter {adapter!r}; choose 'task' or 'lora'")

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """``[N, S, C]`` token ids (S sub-action prompts per class) -> sub-action features ``[N, S, E]``."""
        n, s, c = tokens.shape
        flat = tokens.reshape(n * s, c)
        x = self.tower.embed(flat)  # [(N S), C, W]
        width = x.shape[-1]
        for i, block in enumerate(self.tower.blocks):
            if str(i) not in self.order_adapters:
                x = block_forward(block, x, self.tower.attn_mask)
                continue
            x = x + block_attention(block, x, self.tower.attn_mask)
            xs = x.view(n, s, c, width).transpose(1, 2).reshape(n * c, s, width)  # [(N C), S, W]
            order = self.order_adapters[str(i)](block_attention(block, xs))
            x = x + order.view(n, c, s, width).transpose(1, 2).reshape(n * s, c, width)
            x = x + block_mlp(block, x)
        return self.tower.pool(x, flat).view(n, s, -1)


def stage_windows(num_transitions: int, num_stages: int) -> list[list[int]]:
    """Transition indices matched to each sub-action stage: ``num_stages`` windows of equal width
    ``ceil((num_transitions - 1) / num_stages) + 1``, evenly placed from the first to the last transition.

    >>> stage_windows(7, 3)       # T = 8 frames, 3 sub-actions (the released code's windows)
    [[0, 1, 2], [2, 3, 4], [4, 5, 6]]
    """
    if num_transitions < 1 or num_stages < 1:
        raise ValueError(f"need >= 1 transition and >= 1 stage, got {num_transitions} and {num_stages}")
    width = min(num_transitions, math.ceil((num_transitions - 1) / num_stages) + 1)
    last_start = num_transitions - width
    starts = [round(i * last_start / (num_stages - 1)) if num_stages > 1 else 0 for i in range(num_stages)]
    return [list(range(s, s + width)) for s in starts]


def transition_features(query_feats: torch.Tensor, norm: nn.Module | None = None) -> torch.Tensor:
    """``a_t = norm(softmax(q_t q_{t+1}^T / sqrt(E)) q_{t+1}) + q_{t+1}`` for t = 0..T-2, the attention running
    across the query videos at each frame pair (the released code's batch axis). ``norm`` is the released
    SSv2-Full ``nn.LayerNorm(E)`` on the attention output (``None``: identity); the residual is the raw next
    frame. ``[NQ, T, E]`` -> ``[NQ, T-1, E]``."""
    cur, nxt = query_feats[:, :-1], query_feats[:, 1:]  # [NQ, T-1, E]
    scores = torch.einsum("itd,jtd->tij", cur, nxt) / math.sqrt(query_feats.shape[-1])  # [T-1, NQ, NQ]
    attended = torch.einsum("tij,jtd->itd", scores.softmax(dim=-1), nxt)  # [NQ, T-1, E]
    return (norm(attended) if norm is not None else attended) + nxt


def stage_alignment(query_feats: torch.Tensor, subaction_feats: torch.Tensor,
                    norm: nn.Module | None = None) -> torch.Tensor:
    """Semantic score ``[NQ, N]``: mean over stages i and transitions j of window i of ``cos(a_j, e_{i,c})``.

    query_feats ``[NQ, T, E]``; subaction_feats ``[N, S, E]`` (stage order); ``norm`` as in
    :func:`transition_features`.
    """
    a = F.normalize(transition_features(query_feats, norm), dim=-1)  # [NQ, T-1, E]
    e = F.normalize(subaction_feats, dim=-1)  # [N, S, E]
    windows = stage_windows(a.shape[1], e.shape[1])
    per_stage = [torch.einsum("qwd,nd->qnw", a[:, w], e[:, i]).mean(dim=-1) for i, w in enumerate(windows)]
    return torch.stack(per_stage, dim=-1).mean(dim=-1)


SEM_ORIENTATIONS = ("paper", "released")


def combine_scores(vis: torch.Tensor, sem: torch.Tensor, orientation: str = "paper") -> torch.Tensor:
    """``vis ⊙ sem`` for ``vis``, ``sem`` ``[NQ, N]`` (query x class).

    ``paper``: elementwise, query i with class c in both factors. ``released``: the released ``run.py``
    multiplies ``vis`` [query x class] with ``sem`` as ``models.py`` returns it, [class x query], without a
    transpose, i.e. ``vis[i, c] * sem[c, i]`` — the semantic score of *query c* against *class i*. It is only
    defined for NQ == N (one query per class) and, since its labels are ``0..N-1`` in order, its result depends on
    the queries being ordered by class (as episodes are).
    """
    if orientation == "paper":
        return vis * sem
    if orientation == "released":
        if vis.shape[0] != vis.shape[1]:
            raise ValueError(f"sem_orientation=released multiplies a [query x class] by a [class x query] matrix "
                             f"elementwise, which needs one query per class; got {vis.shape[0]} queries for "
                             f"{vis.shape[1]} classes (set data.n_query=1 or model.sem_orientation=paper)")
        return vis * sem.t()
    raise ValueError(f"unknown sem_orientation {orientation!r}; choose one of {list(SEM_ORIENTATIONS)}")


class SubactionBank:
    """Sub-action sentences per class, looked up by class name.

    Names match as :func:`~mmreason.assets.classes.class_key` does: case, ``_``, spacing and CamelCase
    insensitive, so the UCF101 folder ``ApplyEyeMakeup`` (or ``HandstandPushups``) finds the released corpus key
    ``apply eye makeup`` (``hand stand pushups``). A key shared by two entries of the file is ambiguous and fails.
    :meth:`name` is the file's own spelling of the class, which the prompts use (the released code fills its
    template with its class list's names, e.g. ``apply eye makeup``, not the folder names).
    """

    def __init__(self, subactions: dict[str, Sequence[str]], num_stages: int, source: str = "sub-action mapping"):
        from mmreason.assets.classes import class_key

        self.num_stages, self.source = num_stages, source
        self._by_key: dict[str, tuple[str, list[str]]] = {}
        clashes: dict[str, set[str]] = {}
        for name, sentences in subactions.items():
            sentences = [str(x) for x in sentences]
            if len(sentences) != num_stages:
                raise ValueError(f"{source}: class {name!r} has {len(sentences)} sub-actions, model.num_stages is "
                                 f"{num_stages}")
            key = class_key(name)
            if key in self._by_key and self._by_key[key][1] != sentences:
                clashes.setdefault(key, {self._by_key[key][0]}).add(name)
            self._by_key.setdefault(key, (str(name), sentences))
        self._ambiguous = {k: sorted(v) for k, v in clashes.items()}
        self.names = list(subactions)

    def _entry(self, class_name: str) -> tuple[str, list[str]]:
        from mmreason.assets.classes import class_key

        key = class_key(class_name)
        if key in self._ambiguous:
            raise KeyError(f"{self.source}: class {class_name!r} matches several entries {self._ambiguous[key]}; "
                           "rename the class or the entries")
        if key not in self._by_key:
            from mmreason.registry import did_you_mean

            raise KeyError(f"{self.source}: no sub-actions for class {class_name!r}"
                           f"{did_you_mean(class_name, self.names)}")
        return self._by_key[key]

    def __getitem__(self, class_name: str) -> list[str]:
        return self._entry(class_name)[1]

    def __contains__(self, class_name: object) -> bool:
        try:
            self._entry(str(class_name))
        except KeyError:
            return False
        return True

    def name(self, class_name: str) -> str:
        """The sub-action file's spelling of ``class_name`` (e.g. ``apply eye makeup`` for ``ApplyEyeMakeup``)."""
        return self._entry(class_name)[0]


def load_subactions(path: str) -> dict[str, list[str]]:
    """``{class: [sub-action sentences]}`` from a curated ``knowledge/<dataset>/subactions.jsonl`` (records
    ``{"class", "subactions"}``) or the official Task-Adapter++ corpus YAML (``{class: {label, sub_act_en_li}}``);
    YAML entries are also reachable by their ``label``."""
    from pathlib import Path

    from mmreason.assets.classes import class_key

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: sub-action file not found")
    if p.suffix in (".yml", ".yaml"):
        from mmreason.assets.importers import read_task_adapter_pp_corpus

        records = read_task_adapter_pp_corpus(p)
    elif p.suffix == ".jsonl":
        from mmreason.assets.io import read_records

        records = read_records(p)
    else:
        raise ValueError(f"{p}: expected a .jsonl curated asset or a .yml Task-Adapter++ corpus")
    out: dict[str, list[str]] = {}
    for n, r in enumerate(records, 1):
        if not isinstance(r, dict) or "class" not in r or not isinstance(r.get("subactions"), list):
            raise ValueError(f"{p}: record {n} needs 'class' and a 'subactions' list, got {r!r:.120}")
        out[str(r["class"])] = [str(x) for x in r["subactions"]]
        if r.get("label") and class_key(str(r["label"])) != class_key(str(r["class"])):
            out.setdefault(str(r["label"]), out[str(r["class"])])
    return out


class TaskAdapterPPModel(nn.Module):
    """Task-Adapter++: visual Task-Adapter + order-adapted text tower + fine-grained cross-modal alignment."""

    def __init__(self, cfg: Any, subactions: dict[str, Sequence[str]], source: str = "sub-action mapping"):
        super().__init__()
        m = cfg.model
        towers, self.visual, lora = build_towers_and_vision(m)
        self.text = OrderAdaptedText(towers.text, m.text_adapter_layers, m.text_adapter_ratio, m.adapter, lora)
        self.tokenize = towers.tokenize
        self.bank = SubactionBank(subactions, m.num_stages, source)
        self.template = m.prompt_template
        self.scope, self.chunks, self.logit_scale = m.task_attention_scope, m.task_attention_chunks, m.logit_scale
        self.sem_orientation = m.sem_orientation
        # released SSv2-Full: a trainable LayerNorm (weight 1, bias 0 at init) on the transition attention output;
        # it sits outside the CLIP towers, so it trains with the adapters
        self.transition_ln = nn.LayerNorm(towers.vision.output_dim) if m.transition_norm else None
        self.n_way = cfg.data.n_way
        self._tokens: dict[str, torch.Tensor] = {}

    def prompts(self, class_name: str) -> list[str]:
        """The S prompts of a class, named as the sub-action file names it."""
        name = self.bank.name(class_name)
        return [self.template.format(class_name=name, subaction=s) for s in self.bank[class_name]]

    def class_tokens(self, class_names: Sequence[str]) -> torch.Tensor:
        """``[N, S, C]`` token ids of the classes' sub-action prompts (tokenised once per class)."""
        for name in class_names:
            if name not in self._tokens:
                self._tokens[name] = self.tokenize(self.prompts(name))
        device = self.text.tower.positional_embedding.device
        return torch.stack([self._tokens[n] for n in class_names]).to(device)

    def scores(self, episode: dict) -> dict[str, torch.Tensor]:
        s, q = episode_features(self.visual, episode["support"], episode["query"], self.scope, self.chunks)
        vis = prototype_cosine(s, episode["support_labels"], q, self.n_way)  # [NQ, N]
        text = self.text(self.class_tokens(episode["class_names"]))  # [N, S, E]
        sem = stage_alignment(q, text, self.transition_ln)  # [NQ, N]
        return {"vis": vis, "sem": sem, "logits": combine_scores(vis, sem, self.sem_orientation) * self.logit_scale}

    def forward(self, episode: dict) -> torch.Tensor:
        return self.scores(episode)["logits"]

    def loss(self, episode: dict) -> dict[str, torch.Tensor]:
        logits = self(episode)
        labels = episode["query_labels"].long()
        return {"loss": F.cross_entropy(logits, labels), "acc": episode_accuracy(logits.detach(), labels)}
