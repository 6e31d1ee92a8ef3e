"""Prompt templates under ``prompts/<asset>/``: few-shot completion (``<stage>.completion.txt``) for small base
models and chat (``<stage>.chat.yaml`` with ``system`` and ``user``) for instruction models.

Templates use ``string.Template`` placeholders (``$class_name``), so JSON braces in a prompt need no escaping.
Each template's SHA-256 (of its file bytes) is part of every cache key that used it: editing a prompt
invalidates exactly the answers generated from it. The templates ship as package data (``assets/paths.py``);
``$MMREASON_PROMPTS`` or ``prompts_root=`` points at another folder laid out the same way.
"""
from __future__ import annotations

import functools
import os
import re
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mmreason.assets.paths import prompts_root
from mmreason.utils.hashing import sha256_file

PROMPTS_ROOT = prompts_root()  # at import; load_template resolves it again at each call
STYLES = ("completion", "chat")


class _Blank(dict):
    """Every placeholder renders as nothing (for ``PromptTemplate.own_lines``)."""

    def __missing__(self, key: str) -> str:
        return ""


_BLANKS = _Blank()


@dataclass(frozen=True)
class PromptTemplate:
    """One template file. ``render(**variables)`` gives a completion prompt or a chat message list."""

    id: str            # "<asset>/<stage>.<style>"
    style: str         # "completion" | "chat"
    path: Path
    hash: str          # SHA-256 of the file bytes
    text: str = ""     # completion template
    system: str = ""   # chat templates
    user: str = ""

    def render(self, **variables: Any) -> str | list[dict]:
        try:
            if self.style == "completion":
                # no trailing newline: the model continues the priming line itself ("1." -> " Take the brush.")
                return string.Template(self.text).substitute(variables).rstrip()
            messages = []
            if self.system:
                messages.append({"role": "system", "content": string.Template(self.system).substitute(variables).strip()})
            messages.append({"role": "user", "content": string.Template(self.user).substitute(variables).strip()})
            return messages
        except KeyError as e:
            raise KeyError(f"prompt template {self.path} needs the variable {e.args[0]!r}; "
                           f"given: {', '.join(sorted(variables))}") from None

    @property
    def priming(self) -> str:
        """The completion prompt's last line (e.g. ``"1."``): the model continues it, parsers read it back."""
        return self.text.rstrip("\n").rsplit("\n", 1)[-1] if self.style == "completion" else ""

    @functools.cached_property
    def own_lines(self) -> list[str]:
        """The template's own words, one entry per line (instructions and few-shot examples; placeholders,
        list numbers and ``Key:`` labels removed). An answer that repeats them is a copy, not an answer. The
        completion priming line is not among them: every answer starts with it (see :attr:`answer_lead`)."""
        raw = self.text if self.style == "completion" else f"{self.system}\n{self.user}"
        lines = [_own_words(line) for line in string.Template(raw).safe_substitute(_BLANKS).splitlines()]
        if self.style == "completion":
            lines = lines[:-1]
        return [line for line in lines if line]

    @property
    def answer_lead(self) -> str:
        """The words every completion answer starts with (the priming line without its number or label, e.g.
        ``"The person intends to"``; empty for ``"1."``): the part of an answer that the prompt wrote."""
        return _own_words(self.priming)


def _own_words(line: str) -> str:
    line = re.sub(r"^\s*(?:\d+\s*[.)]|[-*])\s*", "", line)           # "1. ", "- "
    return re.sub(r"^[A-Z][\w -]{0,30}:\s*", "", line).strip()        # "Description: ", "Object relations:"


def load_template(asset: str, stage: str, style: str = "completion", root: str | os.PathLike | None = None) -> PromptTemplate:
    """Load ``prompts/<asset>/<stage>.<style>.{txt,yaml}``; a missing or malformed file names the path."""
    if style not in STYLES:
        raise ValueError(f"prompt style {style!r} is not one of {STYLES}")
    root = Path(root) if root is not None else prompts_root()
    path = root / asset / (f"{stage}.completion.txt" if style == "completion" else f"{stage}.chat.yaml")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: prompt template not found")
    raw = path.read_text(encoding="utf-8")
    template_id = f"{asset}/{stage}.{style}"
    if style == "completion":
        return PromptTemplate(template_id, style, path, sha256_file(path), text=raw)
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: chat template is not valid YAML ({e})") from e
    if not isinstance(data, dict) or "user" not in data:
        raise ValueError(f"{path}: a chat template needs a 'user' key (and optionally 'system')")
    return PromptTemplate(template_id, style, path, sha256_file(path), system=str(data.get("system", "")),
                          user=str(data["user"]))
