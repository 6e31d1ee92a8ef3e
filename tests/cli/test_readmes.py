"""Every file a README points to exists: the top-level README and each method's README are scanned for
repository paths in backticks (``scripts/x.py``, ``configs/y.yaml``, ``tests/a.py::test_b``, ...)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
READMES = [REPO / "README.md", *sorted((REPO / "mmreason" / "methods").glob("*/README.md"))]
TOKEN = re.compile(r"`([^`\s]+)`")
EXTENSIONS = (".py", ".yaml", ".yml", ".md", ".json", ".jsonl", ".txt", ".toml", ".sh", ".cfg")
ROOTS = ("mmreason/", "scripts/", "tests/", "knowledge/", "prompts/", "configs/", "specs/", "docs/")
# files that `mmreason generate` writes: a README may name where they will be
GENERATED = (".jsonl", ".manifest.json", ".embeddings.npz")


def references(readme: Path) -> list[str]:
    """Backticked tokens that name a path in the repository (placeholders, globs and URLs left out)."""
    found = []
    for match in TOKEN.finditer(readme.read_text(encoding="utf-8")):
        token = match.group(1).rstrip(".,:;)")
        if "/" not in token or any(c in token for c in "<>*{}$|=") or "://" in token or "..." in token:
            continue
        path = token.split("::")[0]
        # a repository path starts with one of its folders (or the README's own, e.g. configs/); others
        # (`list/make_gt.py` of a peer's repository, a dataset's `data/charades.json`) are not this repository's
        if path.startswith(ROOTS) or (path.endswith(EXTENSIONS) and (readme.parent / path.split("/")[0]).is_dir()):
            found.append(token)
    return found


def broken(readme: Path) -> list[str]:
    out = []
    for token in references(readme):
        path, _, test_name = token.partition("::")
        candidates = [REPO / path, readme.parent / path, REPO / "mmreason" / path]
        hit = next((c for c in candidates if c.exists()), None)
        if hit is None:
            if not (path.startswith("knowledge/") and path.endswith(GENERATED)):
                out.append(token)
        elif test_name and f"def {test_name.split('[')[0]}(" not in hit.read_text(encoding="utf-8"):
            out.append(token)
    return out


def test_the_scanner_finds_paths_and_misses():
    readme = REPO / "README.md"
    assert "scripts/bench/*.py" not in references(readme)  # globs are not files
    assert any(t.startswith("scripts/launch/") for t in references(readme))
    cbcg = REPO / "mmreason" / "methods" / "cbcg" / "README.md"
    assert "list/make_gt.py" in cbcg.read_text() and "list/make_gt.py" not in references(cbcg)  # a peer's file


@pytest.mark.parametrize("readme", READMES, ids=lambda p: str(p.relative_to(REPO)))
def test_readme_points_to_files_that_exist(readme):
    assert broken(readme) == [], f"{readme.relative_to(REPO)} names files that do not exist"
