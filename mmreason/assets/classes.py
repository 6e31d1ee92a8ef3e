"""Class lists read from each dataset's own label files, plus the lists that ``knowledge/`` ships.

Readers (``format`` names):
    - ``ucf101_classind``: UCF101 ``classInd.txt`` (``"1 ApplyEyeMakeup"`` lines; CamelCase -> words).
    - ``hmdb51_splits``: an HMDB51 ``testTrainMulti_7030_splits`` folder (``<class>_test_split1.txt`` files).
    - ``kinetics_csv``: a Kinetics ``train.csv``/``validate.csv`` (column ``label``) or a one-column class CSV.
    - ``ssv2_labels``: Something-Something v2 ``labels.json`` (``{"Template": "id"}``; the id orders classes).
    - ``ego4d_taxonomy``: Ego4D ``fho_lta_taxonomy.json`` (``{"verbs": [...], "nouns": [...]}``; verb/noun lists).
    - ``epic_csv``: EPIC-Kitchens ``EPIC_verb_classes.csv`` / ``EPIC_noun_classes.csv`` (``class_key`` column)
      or EPIC-100 ``EPIC_100_verb_classes.csv`` (``key`` column).
    - ``lines``: one class per line (``#`` comments allowed) - the format ``knowledge/<dataset>/classes.txt`` uses.

Example:
    >>> from mmreason.assets.classes import bundled_classes
    >>> bundled_classes("hmdb51")[:3]
    ['brush hair', 'cartwheel', 'catch']
"""
from __future__ import annotations

import csv
import json
import os
import re
from pathlib import Path

KNOWLEDGE_ROOT = Path(__file__).resolve().parents[2] / "knowledge"


def _camel_to_words(name: str) -> str:
    # "ApplyEyeMakeup" -> "apply eye makeup"; "YoYo" -> "yo yo"; keeps digit runs ("Pommel Horse")
    words = re.findall(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+", name)
    return " ".join(w.lower() for w in words)


def read_class_list(path: str | os.PathLike, format: str = "auto") -> list[str]:
    """Class names from a dataset label file (see the module docstring for the formats)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: class list not found")
    if format == "auto":
        format = _guess_format(path)
    try:
        names = _READERS[format](path)
    except KeyError as e:
        if format not in _READERS:
            raise ValueError(f"unknown class-list format {format!r}; known: {', '.join(sorted(_READERS))}") from e
        raise ValueError(f"{path}: missing field {e} for format {format!r}") from e
    except (json.JSONDecodeError, UnicodeDecodeError, csv.Error) as e:
        raise ValueError(f"{path}: cannot read as {format!r} ({e})") from e
    if not names:
        raise ValueError(f"{path}: no class names found (format {format!r})")
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"{path}: duplicate class names {dup[:5]}")
    return names


def _guess_format(path: Path) -> str:
    name = path.name.lower()
    if path.is_dir():
        return "hmdb51_splits"
    if name == "classind.txt":
        return "ucf101_classind"
    if name.endswith("taxonomy.json"):
        return "ego4d_taxonomy"
    if name == "labels.json":
        return "ssv2_labels"
    if name.startswith("epic") and name.endswith(".csv"):
        return "epic_csv"
    if name.endswith(".csv"):
        return "kinetics_csv"
    return "lines"


def _read_lines(path: Path) -> list[str]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            out.append(line)
    return out


def _read_ucf101(path: Path) -> list[str]:
    rows = []
    for line in _read_lines(path):
        idx, name = line.split(maxsplit=1)
        rows.append((int(idx), _camel_to_words(name)))
    return [name for _, name in sorted(rows)]


def _read_hmdb51(path: Path) -> list[str]:
    names = sorted({re.sub(r"_test_split\d+\.txt$", "", p.name) for p in path.glob("*_test_split*.txt")})
    return [n.replace("_", " ") for n in names]


def _read_kinetics(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames and "label" in reader.fieldnames:
            return sorted({row["label"].strip() for row in reader})
    return [line for line in _read_lines(path) if line.lower() not in ("name", "label", "class")]


def _read_ssv2(path: Path) -> list[str]:
    data = json.loads(path.read_text(encoding="utf-8"))
    return [t.replace("[", "").replace("]", "") for t, _ in sorted(data.items(), key=lambda kv: int(kv[1]))]


def _read_ego4d(path: Path) -> list[str]:
    data = json.loads(path.read_text(encoding="utf-8"))
    return list(data["verbs"]) + [n for n in data["nouns"] if n not in set(data["verbs"])]


def _read_epic(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    key = "class_key" if rows and "class_key" in rows[0] else "key"
    id_col = next((c for c in ("verb_id", "noun_id", "id") if rows and c in rows[0]), None)
    if id_col:
        rows.sort(key=lambda r: int(r[id_col]))
    return [r[key].strip() for r in rows]


_READERS = {
    "lines": _read_lines,
    "ucf101_classind": _read_ucf101,
    "hmdb51_splits": _read_hmdb51,
    "kinetics_csv": _read_kinetics,
    "ssv2_labels": _read_ssv2,
    "ego4d_taxonomy": _read_ego4d,
    "epic_csv": _read_epic,
}


def bundled_classes(dataset: str, root: str | os.PathLike | None = None) -> list[str]:
    """The class list shipped as ``knowledge/<dataset>/classes.txt``."""
    root = Path(root) if root is not None else KNOWLEDGE_ROOT
    path = root / dataset / "classes.txt"
    if not path.is_file():
        # fall back to the package's own knowledge folder when a custom root has no list
        fallback = KNOWLEDGE_ROOT / dataset / "classes.txt"
        if fallback.is_file():
            path = fallback
        else:
            known = sorted(p.parent.name for p in KNOWLEDGE_ROOT.glob("*/classes.txt"))
            from mmreason.registry import did_you_mean

            raise FileNotFoundError(f"no class list for dataset {dataset!r} ({path}){did_you_mean(dataset, known)} "
                                    f"Bundled: {', '.join(known)}; or pass a label file with --classes-file")
    return read_class_list(path, "lines")
