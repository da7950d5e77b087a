"""Makes ``--model achilles_masked`` resolvable by the stock ``lm_eval`` console script.

lm-eval 0.4.13 has no plugin discovery, so the wheel installs ``lm_eval_achilles_register.pth``, which
imports a copy of this file (the top-level module ``_achilles_register``, so that the package itself is
not imported) at interpreter start. It only installs an import hook (no torch, no lm_eval): when
some program imports ``lm_eval.models``, the hook registers a lazy placeholder
``achilles_masked -> lm_eval_achilles.lm_model:AchillesMaskedLM`` right after lm-eval registers its own
models. Programs that never import lm-eval pay for one small module. Failures are swallowed: a broken
hook must never break an unrelated interpreter.
"""

from __future__ import annotations

import importlib.abc
import sys

MODEL_NAME = "achilles_masked"
TARGET = "lm_eval_achilles.lm_model:AchillesMaskedLM"
_WATCHED = "lm_eval.models"


def register(registry_module=None) -> None:
    """Register the lazy placeholder (idempotent)."""
    try:
        if registry_module is None:
            import lm_eval.api.registry as registry_module
        reg = registry_module.model_registry
        if MODEL_NAME not in reg:
            reg.register(MODEL_NAME, target=TARGET)
    except Exception:  # noqa: BLE001 - never break the host program
        pass


class _AfterImport(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname != _WATCHED:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
                original = spec.loader.exec_module

                def exec_module(module, _original=original):
                    _original(module)
                    register()

                spec.loader.exec_module = exec_module
                return spec
        return None


def install() -> None:
    if _WATCHED in sys.modules:
        register()
    elif not any(isinstance(f, _AfterImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterImport())


try:
    install()
except Exception:  # noqa: BLE001
    pass
