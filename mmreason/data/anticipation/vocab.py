"""Anticipation vocabularies shared by every dataset family: verb/noun/action classes and CSV helpers."""
from __future__ import annotations

import ast
import csv
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np


class AnnotationError(ValueError):
    """An annotation or feature file is malformed; the message names the file and what is wrong."""


def _require_file(path: str | Path, what: str) -> Path:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: {what} not found")
    return path


# ================================================================================================ vocabularies

def normalize_phrase(text: str) -> str:
    """Lower-case, turn ``_ - /`` into spaces, drop other punctuation, collapse spaces (``"Turn-on"`` -> ``"turn on"``)."""
    text = text.lower().replace("_", " ").replace("-", " ").replace("/", " ")
    text = re.sub(r"[^a-z0-9: ]+", " ", text)
    return re.sub(r"\s+", " ", text).strip()


def _clean(text: str) -> str:
    return re.sub(r"\s+", " ", text.replace("_", " ").replace("'", " ")).strip()


def _parse_class_name(raw: str, reverse_colon: bool = True) -> tuple[str, list[list[str]]]:
    """``"pepper_(vegetable)_(capsicum,_pepper)"`` -> ``("pepper", [["vegetable"], ["capsicum", "pepper"]])``: the
    main name and its parenthesised groups. EPIC ``"board:cutting"`` -> ``"cutting board"`` (``reverse_colon``;
    EGTEA's ``"bell:pepper"`` is already in reading order). A trailing comma (one Ego4D noun has one) is dropped."""
    raw = raw.strip().rstrip(",").strip()
    groups = [[_clean(item) for item in inner.split(",") if _clean(item)]
              for inner in re.findall(r"\(([^()]*)\)", raw)]
    main = re.sub(r"\([^()]*\)", " ", raw).strip().strip("_")
    if ":" in main:  # EPIC keys put the modifier last: "board:cutting" is a cutting board
        parts = [p for p in main.split(":") if p]
        main = " ".join(reversed(parts) if reverse_colon else parts)
    return re.sub(r"\s+", " ", main.replace("_", " ").replace("-", " ")).strip(), [g for g in groups if g]


def _display_and_synonyms(parsed: list[tuple[str, list[list[str]]]]) -> list[tuple[str, tuple[str, ...]]]:
    """Per class: the display text and the synonyms its name lists (Ego4D taxonomy conventions).

    A parenthesised group is a *qualifier* (kept in the display text, never a synonym) when it holds one item
    (``nut_(food)``, ``mouse_(computer)``, ``file_(with_tool)``), when it is not the last group
    (``jack_(tool)_(jack,_lift)``), or when another class shares the main name (``chip_(wood,_metal)`` next to
    ``chip_(food)``); otherwise it lists synonyms (``take_(pick,_grab,_get)``). So ``nut_(food)`` and ``nut_(tool)``
    display as ``"nut (food)"`` and ``"nut (tool)"``, and "food" is not a synonym of a nut. A qualified class whose
    main name no other class uses also answers to the bare name (``"mouse"``).
    """
    counts: dict[str, int] = {}
    for main, _ in parsed:
        counts[main] = counts.get(main, 0) + 1
    out = []
    for main, groups in parsed:
        shared = counts[main] > 1
        synonyms: list[str] = []
        qualifiers = list(groups)
        if groups and len(groups[-1]) > 1 and not shared:
            synonyms = qualifiers.pop()
        display = main + "".join(f" ({'/'.join(q)})" for q in qualifiers)
        if qualifiers and not shared and main not in synonyms:
            synonyms.append(main)
        out.append((display, tuple(synonyms)))
    return out


@dataclass(frozen=True)
class Vocabulary:
    """Class id <-> text for one label kind (verb or noun); index = class id, as in the dataset's own file.

    ``names`` are the raw strings of the file, ``display`` the readable text (``"take"``), ``synonyms`` the
    alternatives the file lists (Ego4D ``"take_(pick,_grab,_get)"``, EPIC ``instances``).
    """

    names: tuple[str, ...]
    display: tuple[str, ...]
    synonyms: tuple[tuple[str, ...], ...]
    kind: str = "class"

    @classmethod
    def from_names(cls, names: Sequence[str], kind: str = "class", synonyms: Sequence[Sequence[str]] | None = None,
                   reverse_colon: bool = True) -> "Vocabulary":
        parsed = _display_and_synonyms([_parse_class_name(str(n), reverse_colon) for n in names])
        syn = [tuple(p[1]) + tuple(synonyms[i] if synonyms else ()) for i, p in enumerate(parsed)]
        return cls(tuple(str(n) for n in names), tuple(p[0] for p in parsed), tuple(syn), kind)

    def __len__(self) -> int:
        return len(self.names)

    def text(self, idx: int) -> str:
        return self.display[idx]

    def _tables(self) -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
        # Built lazily once; frozen dataclass, so cache on the instance dict.
        cached = self.__dict__.get("_cache")
        if cached is None:
            raw = {}
            for i, n in enumerate(self.names):
                raw.setdefault(n, i)
                raw.setdefault(self.display[i], i)
            primary, secondary = {}, {}
            for i in range(len(self)):
                primary.setdefault(normalize_phrase(self.names[i]), i)
                primary.setdefault(normalize_phrase(self.display[i]), i)
                for s in self.synonyms[i]:
                    secondary.setdefault(normalize_phrase(s), i)
            cached = (raw, primary, secondary)
            object.__setattr__(self, "_cache", cached)
        return cached

    def lookup(self, phrase: str, *, fuzzy_cutoff: float | None = 90.0) -> int | None:
        """Class id of ``phrase``: exact name, then case-insensitive/normalised name or synonym, then rapidfuzz.

        Fuzzy matching uses ``rapidfuzz.process.extractOne`` (default WRatio scorer) with ``score_cutoff``
        (90 in AntGPT's ``eval_v2.py``); ``fuzzy_cutoff=None`` turns it off. Returns None when nothing matches.
        """
        raw, primary, secondary = self._tables()
        if phrase in raw:
            return raw[phrase]
        key = normalize_phrase(phrase)
        if not key:
            return None
        if key in primary:
            return primary[key]
        if key in secondary:
            return secondary[key]
        if fuzzy_cutoff is None:
            return None
        hit = self.fuzzy(key, fuzzy_cutoff)
        return None if hit is None else hit[0]

    def fuzzy(self, phrase: str, cutoff: float = 90.0) -> tuple[int, float] | None:
        """Best (class id, score) by ``rapidfuzz.process.extractOne`` over normalised names and synonyms."""
        from rapidfuzz import process

        choices = self.normalized_forms()
        hit = process.extractOne(normalize_phrase(phrase), list(choices), score_cutoff=cutoff)
        return None if hit is None else (choices[hit[0]], float(hit[1]))

    def normalized_forms(self) -> dict[str, int]:
        """Every normalised name and synonym -> class id (names win over synonyms)."""
        _, primary, secondary = self._tables()
        return {**secondary, **primary}


@dataclass(frozen=True)
class ActionVocab:
    """Verbs, nouns and the action classes over them.

    ``actions[a] = (verb, noun)`` for datasets with an explicit action list (EPIC ``actions.csv``, EGTEA). For
    Ego4D, which has none, ``actions`` is None and the action id is the dense ``verb * num_nouns + noun``
    (the encoding used for the action edit distance).
    """

    verbs: Vocabulary
    nouns: Vocabulary
    actions: tuple[tuple[int, int], ...] | None = None

    @property
    def num_actions(self) -> int:
        return len(self.actions) if self.actions is not None else len(self.verbs) * len(self.nouns)

    def action_id(self, verb: int, noun: int) -> int | None:
        if self.actions is None:
            return int(verb) * len(self.nouns) + int(noun)
        table = self.__dict__.get("_pair_to_action")
        if table is None:
            table = {}
            for a, vn in enumerate(self.actions):
                table.setdefault(tuple(vn), a)
            object.__setattr__(self, "_pair_to_action", table)
        return table.get((int(verb), int(noun)))

    def verb_noun(self, action: int) -> tuple[int, int]:
        if self.actions is None:
            return divmod(int(action), len(self.nouns))
        return self.actions[action]

    def action_verbs(self) -> np.ndarray:
        """``[A]`` verb id of each action (for marginalisation)."""
        return np.array([self.verb_noun(a)[0] for a in range(self.num_actions)], dtype=np.int64)

    def action_nouns(self) -> np.ndarray:
        return np.array([self.verb_noun(a)[1] for a in range(self.num_actions)], dtype=np.int64)

    def action_text(self, action: int) -> str:
        v, n = self.verb_noun(action)
        return f"{self.verbs.text(v)} {self.nouns.text(n)}"

    def action_texts(self) -> list[str]:
        return [self.action_text(a) for a in range(self.num_actions)]


def _read_csv_rows(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return [[c.strip() for c in row] for row in csv.reader(f) if row and any(c.strip() for c in row)]


def _parse_instances(cell: str) -> tuple[str, ...]:
    cell = cell.strip()
    if cell.startswith("["):
        try:
            items = ast.literal_eval(cell)
            return tuple(str(x) for x in items)
        except (ValueError, SyntaxError):
            return ()
    return ()


def read_class_ids(path: str | Path) -> np.ndarray:
    """Class ids from the first column of a CSV with a header (``EPIC_many_shot_verbs.csv`` etc.)."""
    path = _require_file(path, "class-id CSV")
    rows = _read_csv_rows(path)
    try:
        return np.array([int(r[0]) for r in rows[1:]], dtype=np.int64)
    except ValueError as e:
        raise AnnotationError(f"{path}: the first column must hold integer class ids after a header ({e})") from e
