"""One folder per paper. Each is registered lazily so ``mmreason ls methods`` imports nothing heavy."""
from mmreason.registry import METHODS

# name -> "module:METHOD" (a MethodSpec); a method appears here once its folder exists.
_METHODS: dict[str, tuple[str, str]] = {
    "corm": ("mmreason.methods.corm:METHOD",
             "CORM (arXiv 2303.08463): co-occurrence relation module for multi-label TAL on PDAN / MS-TCT"),
    "vs_transgru": ("mmreason.methods.vs_transgru:METHOD",
                    "VS-TransGRU (arXiv 2307.03918): Transformer-GRU egocentric action anticipation"),
}

for _name, (_target, _help) in _METHODS.items():
    METHODS.register_lazy(_name, _target, help=_help)
