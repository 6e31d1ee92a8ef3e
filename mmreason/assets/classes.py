"""Class lists read from each dataset's own label files, plus the lists that ``knowledge/`` ships.

Readers (``format`` names):
    - ``ucf101_classind``: UCF101 ``classInd.txt`` (``"1 ApplyEyeMakeup"`` lines; CamelCase -> words).
    - ``hmdb51_splits``: an HMDB51 ``testTrainMulti_7030_splits`` folder (``<class>_test_split1.txt`` files).
    - ``kinetics_csv``: a Kinetics ``train.csv``/``validate.csv`` (column ``label``) or a one-column class CSV.
    - ``id_name_csv``: an ``id,name`` CSV (header ``id,name``, then ``0,abseiling`` ...; the class-label files of
      the Open-VCLIP / ViFi-CLIP lineage); classes in id order.
    - ``yaml_classes``: a YAML file with a ``classes:`` list (STDD ``classes_label_<ds>.yml``); other YAML (e.g. a
      sub-action corpus) is refused rather than read line by line.
    - ``ssv2_labels``: Something-Something v2 ``labels.json`` (``{"Template": "id"}``; the id orders classes).
    - ``ego4d_taxonomy``: Ego4D ``fho_lta_taxonomy.json`` (``{"verbs": [...], "nouns": [...]}``; verb/noun lists).
    - ``epic_csv``: EPIC-Kitchens ``EPIC_verb_classes.csv`` / ``EPIC_noun_classes.csv`` (``class_key`` column)
      or EPIC-100 ``EPIC_100_verb_classes.csv`` (``key`` column).
    - ``lines``: one class per line (``#`` comments allowed) - the format ``knowledge/<dataset>/classes.txt`` uses.

:func:`read_class_index` gives ``{label id: name}`` (the file's own ids for ``id_name_csv`` and
``ucf101_classind``, else the position); :func:`class_key` is the key class names match by across sources.

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

from mmreason.assets.paths import shipped_dir

# the shipped class lists: the checkout's knowledge/ folder, or the wheel's copy (mmreason/knowledge)
KNOWLEDGE_ROOT = shipped_dir("knowledge")


def class_key(name: str) -> str:
    """The key class names from different sources match by: lower-case letters and digits only, so a UCF101
    folder ``ApplyEyeMakeup``, ``apply_eye_makeup`` and the released corpus key ``apply eye makeup`` agree (as do
    ``HandstandPushups`` / ``hand stand pushups`` and ``Shotput`` / ``shot put``)."""
    return "".join(ch for ch in str(name).lower() if ch.isalnum())


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
    if name.endswith((".yml", ".yaml")):
        return "yaml_classes"
    if name.endswith(".csv"):
        with open(path, newline="", encoding="utf-8") as f:
            header = next(csv.reader(f), [])
        return "id_name_csv" if [h.strip().lower() for h in header[:2]] == ["id", "name"] else "kinetics_csv"
    return "lines"


def _read_lines(path: Path) -> list[str]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            out.append(line)
    return out


def _pairs_ucf101(path: Path) -> list[tuple[int, str]]:
    rows = []
    for line in _read_lines(path):
        idx, name = line.split(maxsplit=1)
        rows.append((int(idx), _camel_to_words(name)))
    return rows


def _pairs_id_name_csv(path: Path) -> list[tuple[int, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        next(reader, None)  # the id,name header
        rows = []
        for lineno, row in enumerate(reader, 2):
            if not row or not "".join(row).strip():
                continue
            if len(row) < 2 or not row[0].strip().lstrip("-").isdigit():
                raise ValueError(f"{path}:{lineno}: expected '<id>,<name>', got {','.join(row)!r}")
            rows.append((int(row[0]), ",".join(row[1:]).strip()))  # names may hold commas (unquoted)
    return rows


# formats whose files state each class's label id
_INDEXED = {"ucf101_classind": _pairs_ucf101, "id_name_csv": _pairs_id_name_csv}


def _by_id(pairs: list[tuple[int, str]], path: Path) -> dict[int, str]:
    index: dict[int, str] = {}
    for i, name in pairs:
        if i in index:
            raise ValueError(f"{path}: label id {i} appears twice ({index[i]!r}, {name!r})")
        index[i] = name
    return dict(sorted(index.items()))


def read_class_index(path: str | os.PathLike, format: str = "auto") -> dict[int, str]:
    """``{label id: class name}`` from a class-list file: the file's own ids for ``id_name_csv`` and
    ``ucf101_classind`` files, otherwise the position in the list (0-based)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: class list not found")
    format = _guess_format(path) if format == "auto" else format
    if format in _INDEXED:
        read_class_list(path, format)  # the same checks: readable, non-empty, no duplicate names
        return _by_id(_INDEXED[format](path), path)
    return dict(enumerate(read_class_list(path, format)))


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


def _read_yaml_classes(path: Path) -> list[str]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: not valid YAML ({e})") from e
    if not isinstance(data, dict) or not isinstance(data.get("classes"), list):
        raise ValueError(f"{path}: a YAML class list needs a 'classes:' list (as STDD's classes_label_<ds>.yml); "
                         "give one name per line or an 'id,name' CSV instead")
    return [str(c).strip() for c in data["classes"]]


_READERS = {
    "lines": _read_lines,
    "ucf101_classind": lambda path: list(_by_id(_pairs_ucf101(path), path).values()),
    "id_name_csv": lambda path: list(_by_id(_pairs_id_name_csv(path), path).values()),
    "yaml_classes": _read_yaml_classes,
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
