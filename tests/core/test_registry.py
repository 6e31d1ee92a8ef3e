"""Registry: eager and lazy entries, did-you-mean errors, the project's registries list without heavy imports."""
from __future__ import annotations

import subprocess
import sys

import pytest

from mmreason.registry import Registry, did_you_mean, import_string


def test_eager_lazy_and_errors():
    reg = Registry("widget")
    reg.register("alpha", 1, help="first")

    @reg.register("beta")
    def beta():
        """Second widget."""

    reg.register_lazy("gamma", "collections:OrderedDict", help="lazy")
    assert reg.get("alpha") == 1
    assert reg.get("beta") is beta and reg.describe("beta") == "Second widget."
    import collections

    assert reg.get("gamma") is collections.OrderedDict
    assert "gamma" in reg and len(reg) == 3 and reg.names() == ["alpha", "beta", "gamma"]
    with pytest.raises(KeyError, match="did you mean 'alpha'"):
        reg.get("alpah")
    with pytest.raises(KeyError, match="already registered"):
        reg.register("alpha", 2)
    reg.register("alpha", 2, overwrite=True)
    assert reg.get("alpha") == 2
    with pytest.raises(ValueError, match="module:attr"):
        reg.register_lazy("delta", "no_colon")


def test_lazy_entry_with_a_broken_target_names_it():
    reg = Registry("thing")
    reg.register_lazy("ghost", "mmreason.does_not_exist:Thing")
    with pytest.raises(ModuleNotFoundError):
        reg.get("ghost")


def test_did_you_mean_and_import_string():
    assert did_you_mean("stdd", ["std", "corm"]) == "; did you mean 'std'?"
    assert did_you_mean("zzz", ["corm"]) == ""
    assert import_string("os.path:join") is __import__("os").path.join


def test_import_mmreason_is_light():
    code = ("import sys, mmreason, mmreason.methods, mmreason.cli.main; "
            "heavy = [m for m in ('torch', 'vllm', 'faiss', 'open_clip', 'transformers') if m in sys.modules]; "
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""
