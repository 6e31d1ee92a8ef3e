"""Free LLM text -> vocabulary ids (exact, case-insensitive, then fuzzy), padded or truncated to Z."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Mapping, Sequence

from mmreason.data.anticipation.vocab import ActionVocab, Vocabulary, normalize_phrase

_NUMBERING = re.compile(r"^\s*(?:step\s*)?(?:\(?\d+[\.\):]|[-*\u2022])\s*", re.IGNORECASE)
_LEADING_CONNECTIVES = {"then", "next", "and", "finally", "first", "after", "afterwards", "later", "also", "will",
                        "they", "he", "she", "person", "the", "camera", "wearer", "i", "you", "we", "to"}
_LEADING_FILLER = {"the", "a", "an", "some", "of", "into", "in", "on", "onto", "to", "from", "with", "at", "off",
                   "out", "up", "down", "over", "for", "its", "his", "her", "their", "my"}


def split_action_phrases(text: str) -> list[str]:
    """Split LLM output into action phrases: one per line, comma, semicolon or sentence; numbering and bullets removed."""
    phrases = []
    for line in re.split(r"[\n;]+", text):
        line = _NUMBERING.sub("", line)
        for part in re.split(r",|\.\s+", line):
            part = _NUMBERING.sub("", part).strip().strip(".").strip()
            if part:
                phrases.append(part)
    return phrases


@dataclass
class MappedSequence:
    """Result of :func:`map_sequence`: ``pairs`` of (verb, noun) ids, length Z after padding/truncation."""

    pairs: list[tuple[int, int]]
    num_mapped: int
    dropped: list[str] = field(default_factory=list)
    padded: int = 0

    @property
    def verbs(self) -> list[int]:
        return [v for v, _ in self.pairs]

    @property
    def nouns(self) -> list[int]:
        return [n for _, n in self.pairs]


def _base_forms(word: str) -> list[str]:
    """``"takes"`` -> take, ``"cutting"`` -> cut, ``"placed"`` -> place: the word and its likely base forms."""
    out = [word]
    for suffix in ("ing", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) > len(suffix) + 2:
            stem = word[: -len(suffix)]
            out += [stem, stem + "e"]
            if len(stem) > 2 and stem[-1] == stem[-2]:  # cutting -> cutt -> cut
                out.append(stem[:-1])
    return out


def _match_verb_prefix(words: list[str], verb_forms: Mapping[str, int], max_words: int = 3) -> tuple[int, int] | None:
    for n in range(min(max_words, len(words) - 1), 0, -1):   # leave at least one word for the noun
        for first in _base_forms(words[0]):
            cand = " ".join([first] + words[1:n])
            if cand in verb_forms:
                return verb_forms[cand], n
    return None


def _match_noun(words: list[str], nouns: Vocabulary, fuzzy_cutoff: float | None) -> int | None:
    """Longest exact (case-insensitive) leading word sequence, then fuzzy on all words, then on the first."""
    while len(words) > 1 and words[0] in _LEADING_FILLER:
        words = words[1:]
    for n in range(len(words), 0, -1):                 # "cutting board in the sink" -> "cutting board"
        hit = nouns.lookup(" ".join(words[:n]), fuzzy_cutoff=None)
        if hit is not None:
            return hit
    if fuzzy_cutoff is None or not words:
        return None
    hit = nouns.lookup(" ".join(words), fuzzy_cutoff=fuzzy_cutoff)
    if hit is None and len(words) > 1:
        hit = nouns.lookup(words[0], fuzzy_cutoff=fuzzy_cutoff)
    return hit


def map_action_phrase(phrase: str | tuple[str, str], vocab: ActionVocab, *,
                      fuzzy_cutoff: float | None = 90.0) -> tuple[int, int] | None:
    """``"Take the knife"`` or ``("take", "knife")`` -> (verb id, noun id); None when either part is unmappable.

    The verb is the longest leading word sequence (up to 3 words, first word also tried in base form:
    ``takes``/``taking`` -> ``take``) that is a verb name or synonym, case-insensitive; failing that, the best
    fuzzy match among those prefixes. The remaining words, without leading articles/prepositions, give the noun:
    the longest exact leading sequence, then fuzzy.
    """
    if isinstance(phrase, tuple):
        v = vocab.verbs.lookup(phrase[0].strip(), fuzzy_cutoff=fuzzy_cutoff)
        n = vocab.nouns.lookup(phrase[1].strip(), fuzzy_cutoff=fuzzy_cutoff)
        return None if v is None or n is None else (v, n)
    words = normalize_phrase(phrase).split()
    while len(words) > 2 and words[0] in _LEADING_CONNECTIVES:   # "then cut onion", "and finally wash pan"
        words = words[1:]
    if len(words) < 2:
        return None
    hit = _match_verb_prefix(words, vocab.verbs.normalized_forms())
    if hit is None and fuzzy_cutoff is not None:
        # no exact verb prefix: the best fuzzy match among the 1..3-word prefixes (leaving a noun word)
        scored = [(m[1], m[0], n) for n in range(1, min(3, len(words) - 1) + 1)
                  if (m := vocab.verbs.fuzzy(" ".join(words[:n]), fuzzy_cutoff)) is not None]
        if scored:
            _, v, n = max(scored)
            hit = (v, n)
    if hit is None:
        return None
    verb, used = hit
    noun = _match_noun(words[used:], vocab.nouns, fuzzy_cutoff)
    return None if noun is None else (verb, noun)


def map_sequence(output: str | Sequence[str] | Sequence[tuple[str, str]], vocab: ActionVocab, z: int = 20, *,
                 pad: str = "repeat_last", fill: tuple[int, int] = (0, 0),
                 fuzzy_cutoff: float | None = 90.0) -> MappedSequence:
    """Turn noisy LLM output into Z (verb, noun) id pairs.

    ``output`` is raw text (``"1. take knife\\n2. cut onion"`` or ``"take knife, cut onion"``), a list of phrases,
    or a list of (verb text, noun text) pairs. Unmappable phrases are dropped (and listed in ``dropped``). The
    result is truncated to ``z`` or padded: ``pad="repeat_last"`` repeats the last mapped action (AntGPT, PALM),
    ``pad="fill"`` appends ``fill``; with nothing mapped both use ``fill``. AntGPT's further fallbacks
    (frequency-weighted random words, copying the nearest training sequence when nothing parses) are left to
    the caller, which can test ``num_mapped``.
    """
    if pad not in ("repeat_last", "fill"):
        raise ValueError(f"pad must be 'repeat_last' or 'fill', got {pad!r}")
    if isinstance(output, str):
        phrases: list[str | tuple[str, str]] = list(split_action_phrases(output))
    else:
        phrases = []
        for item in output:
            if isinstance(item, (tuple, list)) and len(item) == 2:
                phrases.append((str(item[0]), str(item[1])))
            else:
                phrases.extend(split_action_phrases(str(item)))
    pairs, dropped = [], []
    for p in phrases:
        m = map_action_phrase(p, vocab, fuzzy_cutoff=fuzzy_cutoff)
        if m is None:
            dropped.append(p if isinstance(p, str) else " ".join(p))
        else:
            pairs.append(m)
    num_mapped = len(pairs)
    pairs = pairs[:z]
    padded = z - len(pairs)
    if padded > 0:
        filler = pairs[-1] if (pairs and pad == "repeat_last") else tuple(fill)
        pairs = pairs + [filler] * padded
    return MappedSequence([(int(v), int(n)) for v, n in pairs], num_mapped, dropped, padded)

