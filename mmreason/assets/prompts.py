"""Prompt templates under ``prompts/<asset>/``: few-shot completion (``<stage>.completion.txt``) for small base
models and chat (``<stage>.chat.yaml`` with ``system`` and ``user``) for instruction models.

Templates use ``string.Template`` placeholders (``$class_name``), so JSON braces in a prompt need no escaping.
Each template's SHA-256 (of its file bytes) is part of every cache key that used it: editing a prompt
invalidates exactly the answers generated from it.
"""
from __future__ import annotations

import os
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mmreason.utils.hashing import sha256_file

PROMPTS_ROOT = Path(os.environ.get("MMREASON_PROMPTS", Path(__file__).resolve().parents[2] / "prompts"))
STYLES = ("completion", "chat")


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


def load_template(asset: str, stage: str, style: str = "completion", root: str | os.PathLike | None = None) -> PromptTemplate:
    """Load ``prompts/<asset>/<stage>.<style>.{txt,yaml}``; a missing or malformed file names the path."""
    if style not in STYLES:
        raise ValueError(f"prompt style {style!r} is not one of {STYLES}")
    root = Path(root) if root is not None else PROMPTS_ROOT
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
