"""lm_eval_achilles: locate the critical neurons of a causal LM and evaluate it with and without them.

The public API, in one line each::

    from lm_eval_achilles import LoadedModel, LocatorConfig, load_model, locate, masked, folded, load_mask, save_mask

    loaded = load_model()                      # the embedded SmolLM2-135M-Instruct (or a hub id / path)
    mask = locate(loaded)                      # the paper's two stages -> a MaskFile
    mask = locate(loaded, LocatorConfig(samples="auto"))   # every locator setting: one LocatorConfig
    mask = locate(LoadedModel(my_model, my_tokenizer, "my-model"))  # a model you built (PEFT, device_map ...)
    save_mask(mask, "mask.json")
    with masked(loaded.model, mask.neurons):   # forward hooks, removed on exit
        ...
    with folded(loaded.model, mask.neurons):   # the same mask written into the weights, restored on exit
        ...

Importing this package is cheap: these names are imported on first use, so torch, transformers and
lm-eval load only when needed. The package is organised by job (imports flow one way, left to right)::

    models -> mask -> locator -> finetune -> harness -> comparison -> paper -> cli
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: public name -> module that defines it
_API = {
    "load_model": "lm_eval_achilles.models.loading",
    "LoadedModel": "lm_eval_achilles.models.loading",
    "locate": "lm_eval_achilles.locator.locate",
    "LocatorConfig": "lm_eval_achilles.locator.config",
    "masked": "lm_eval_achilles.mask.masking",
    "folded": "lm_eval_achilles.mask.masking",
    "load_mask": "lm_eval_achilles.mask.mask_file",
    "save_mask": "lm_eval_achilles.mask.mask_file",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        value = getattr(importlib.import_module(_API[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'lm_eval_achilles' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
