"""Importers for officially released text assets, turned into curated mmreason records.

- Task-Adapter++ (github.com/Jaulin-Bage/Task-Adapter-pp, ``corpus/classes_<ds>.yml``, MIT):
  ``{class: {label, sub_act_en_li: [3 sentences]}}`` -> ``subactions`` records.
- STDD (github.com/Mia-YatingYu/STDD, ``label_db/``): ``classes_ASKG_<ds>.yml``
  ``{class: {label, obj_en_li, obj_rel_triples, act_obj_triples, sub_act_en_li, act_rel_triples}}`` with triples
  written ``"<a, relation, b>"``, plus ``classes_xprompt_<ds>.yml`` ``{class: {label, xprompt_oo, xprompt_ao,
  xprompt_aa}}`` -> ``action_graph`` records; ``classes_label_<ds>.yml`` -> class list and templates.

:func:`import_released` is what ``mmreason import task_adapter_pp|stdd PATH --dataset D`` calls (PATH = the file or
the released folder).

Example:
    >>> from mmreason.assets.importers import import_task_adapter_pp
    >>> import_task_adapter_pp("classes_hmdb51.yml", dataset="hmdb51")        # doctest: +SKIP
"""
from __future__ import annotations

import os
from pathlib import Path

import yaml

from mmreason.assets.action_graph import parse_triple
from mmreason.assets.io import asset_paths, write_manifest, write_records
from mmreason.utils.hashing import sha256_file


def _read_yaml_mapping(path: str | os.PathLike) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: not valid YAML ({e})") from e
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of class name -> fields")
    return data


def _field(path: Path, name: str, entry: dict, key: str) -> list:
    if not isinstance(entry, dict) or key not in entry:
        raise ValueError(f"{path}: class {name!r} has no '{key}' field")
    value = entry[key] or []
    if not isinstance(value, list):
        raise ValueError(f"{path}: class {name!r}: '{key}' must be a list")
    return [str(v).strip() for v in value]


def read_task_adapter_pp_corpus(path: str | os.PathLike) -> list[dict]:
    """Records ``{"id", "class", "label", "subactions"}`` in file order."""
    path = Path(path)
    data = _read_yaml_mapping(path)
    return [{"id": str(name), "class": str(name), "label": str((entry or {}).get("label", name)),
             "subactions": _field(path, name, entry, "sub_act_en_li")} for name, entry in data.items()]


def _triples(path: Path, name: str, entry: dict, key: str) -> list[list[str]]:
    """Official triples; the released files hold a few two-part ones (``<eye, area where makeup is applied>``),
    kept as ``[head, "", tail]`` so nothing released is dropped."""
    out = []
    for text in _field(path, name, entry, key):
        triple = parse_triple(text)
        if triple is None:
            parts = [p.strip() for p in text.strip().strip("<>").split(",") if p.strip()]
            if len(parts) != 2:
                raise ValueError(f"{path}: class {name!r}: {key} entry {text!r} is not a <head, relation, tail> triple")
            triple = [parts[0], "", parts[1]]
        out.append(triple)
    return out


def read_stdd_askg(path: str | os.PathLike, xprompt_path: str | os.PathLike | None = None) -> list[dict]:
    """ASKG records (triples as ``[head, relation, tail]``), merged with the xprompt continuations if given."""
    path = Path(path)
    data = _read_yaml_mapping(path)
    records = []
    for name, entry in data.items():
        records.append({
            "id": str(name), "class": str(name), "label": str((entry or {}).get("label", name)),
            "obj_en_li": _field(path, name, entry, "obj_en_li"),
            "obj_rel_triples": _triples(path, name, entry, "obj_rel_triples"),
            "act_obj_triples": _triples(path, name, entry, "act_obj_triples"),
            "sub_act_en_li": _field(path, name, entry, "sub_act_en_li"),
            "act_rel_triples": _triples(path, name, entry, "act_rel_triples"),
            "act_rel_source": "official",
        })
    if xprompt_path is not None:
        xprompts = read_stdd_xprompt(xprompt_path)
        for r in records:
            x = xprompts.get(r["id"])
            if x is None:
                raise ValueError(f"{xprompt_path}: no continuations for class {r['id']!r} of {path}")
            r.update(x)
    return records


def read_stdd_xprompt(path: str | os.PathLike) -> dict[str, dict]:
    """``{class: {"xprompt_oo": [...], "xprompt_ao": [...], "xprompt_aa": [...]}}``."""
    path = Path(path)
    data = _read_yaml_mapping(path)
    return {str(name): {k: _field(path, name, entry, k) for k in ("xprompt_oo", "xprompt_ao", "xprompt_aa")}
            for name, entry in data.items()}


def read_stdd_label_file(path: str | os.PathLike) -> dict:
    """``classes_label_<ds>.yml`` -> ``{"classes": [...], "templates": [...], "obj_templates": [...]}``."""
    path = Path(path)
    data = _read_yaml_mapping(path)
    if "classes" not in data:
        raise ValueError(f"{path}: no 'classes' list")
    return {"classes": [str(c) for c in data["classes"]], "templates": [str(t) for t in data.get("templates", [])],
            "obj_templates": [str(t) for t in data.get("obj_templates", [])]}


def _write(asset: str, dataset: str, records: list[dict], sources: list[Path], root) -> Path:
    paths = asset_paths(asset, dataset, root)
    write_records(paths["records"], records)
    write_manifest(paths["manifest"], {
        "asset": asset, "dataset": dataset, "source": "official release",
        "files": {p.name: sha256_file(p) for p in sources},
        "counts": {"items": len(records), "records": len(records), "generated": 0, "cached": 0, "failed": 0},
        "failures": [],
    })
    return paths["records"]


def import_task_adapter_pp(path: str | os.PathLike, dataset: str, root: str | os.PathLike | None = None) -> Path:
    """Write the official Task-Adapter++ corpus as ``knowledge/<dataset>/subactions.jsonl``."""
    return _write("subactions", dataset, read_task_adapter_pp_corpus(path), [Path(path)], root)


def import_stdd(askg_path: str | os.PathLike, xprompt_path: str | os.PathLike, dataset: str,
                root: str | os.PathLike | None = None) -> Path:
    """Write the official STDD ASKG + continuations as ``knowledge/<dataset>/action_graph.jsonl``."""
    return _write("action_graph", dataset, read_stdd_askg(askg_path, xprompt_path), [Path(askg_path), Path(xprompt_path)],
                  root)


RELEASED = ("task_adapter_pp", "stdd")


def _released_file(path: Path, pattern: str, method: str) -> Path:
    """``path`` itself, or ``path/<pattern>`` when ``path`` is the released folder (``corpus/``, ``label_db/``)."""
    if path.is_dir():
        candidate = path / pattern
        if not candidate.is_file():
            found = sorted(p.name for p in path.glob("classes_*.yml"))
            raise FileNotFoundError(f"{candidate}: not found; the {method} files in {path} are {found or 'none'} "
                                    f"(pass the file itself when its name differs from --dataset)")
        return candidate
    if not path.is_file():
        raise FileNotFoundError(f"{path}: released {method} file not found")
    return path


def import_released(method: str, path: str | os.PathLike, dataset: str, root: str | os.PathLike | None = None, *,
                    xprompt: str | os.PathLike | None = None) -> Path:
    """Import a method's officially released text asset as ``<root>/<dataset>/<asset>.jsonl`` (+ manifest).

    ``task_adapter_pp``: ``path`` = the corpus file ``classes_<ds>.yml`` or the ``corpus/`` folder (then
    ``classes_<dataset>.yml``) -> ``subactions.jsonl``. ``stdd``: ``path`` = ``classes_ASKG_<ds>.yml`` or the
    ``label_db/`` folder (then ``classes_ASKG_<dataset>.yml``), with the continuations ``xprompt`` (default: the
    ``classes_xprompt_<ds>.yml`` beside it) -> ``action_graph.jsonl``.
    """
    path = Path(path)
    if method == "task_adapter_pp":
        return import_task_adapter_pp(_released_file(path, f"classes_{dataset}.yml", method), dataset, root)
    if method == "stdd":
        askg = _released_file(path, f"classes_ASKG_{dataset}.yml", method)
        if xprompt is None:
            if not askg.name.startswith("classes_ASKG_"):
                raise ValueError(f"{askg}: cannot tell its xprompt file from the name; pass it (--xprompt)")
            xprompt = askg.with_name(askg.name.replace("classes_ASKG_", "classes_xprompt_", 1))
            if not Path(xprompt).is_file():
                raise FileNotFoundError(f"{xprompt}: the STDD continuations for {askg.name} are not beside it; "
                                        "pass their file (--xprompt)")
        return import_stdd(askg, xprompt, dataset, root)
    from mmreason.registry import did_you_mean

    raise ValueError(f"no importer for {method!r}{did_you_mean(method, list(RELEASED))}; "
                     f"released assets: {', '.join(RELEASED)}")
