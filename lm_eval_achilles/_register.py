"""Makes ``--model achilles_masked`` resolvable by the stock ``lm_eval`` console script.

lm-eval 0.4.13 has no plugin discovery, so the wheel installs ``lm_eval_achilles_register.pth``, which
imports a copy of this file (the top-level module ``_achilles_register``, so that the package itself is
not imported) at interpreter start. It only installs an import hook (no torch, no lm_eval): when
some program imports ``lm_eval.models``, the hook registers a lazy placeholder
``achilles_masked -> lm_eval_achilles.harness.lm_model:AchillesMaskedLM`` right after lm-eval registers its own
models. Programs that never import lm-eval pay for one small module. A failure never breaks the host
program: it is reported once, as one line on stderr, and ``--model achilles_masked`` is then unknown
to lm-eval (``achilles eval`` still registers the model itself).
"""

from __future__ import annotations

import importlib.abc
import sys

MODEL_NAME = "achilles_masked"
TARGET = "lm_eval_achilles.harness.lm_model:AchillesMaskedLM"
_WATCHED = "lm_eval.models"
_MARKER = "_achilles_after_import"  # set on our finder; more than one copy of this file may be imported
_warned = False


def _warn(exc: BaseException) -> None:
    global _warned
    if not _warned:
        _warned = True
        print(
            f"lm_eval_achilles: warning: could not register the lm-eval model {MODEL_NAME!r} "
            f"({type(exc).__name__}: {exc}); use `achilles eval` instead of `lm_eval`",
            file=sys.stderr,
        )


def register(registry_module=None) -> None:
    """Register the lazy placeholder (idempotent)."""
    try:
        if registry_module is None:
            import lm_eval.api.registry as registry_module
        reg = registry_module.model_registry
        if MODEL_NAME not in reg:
            reg.register(MODEL_NAME, target=TARGET)
    except Exception as exc:  # noqa: BLE001 - never break the host program
        _warn(exc)


class _AfterImport(importlib.abc.MetaPathFinder):
    _achilles_after_import = True

    def find_spec(self, fullname, path, target=None):
        if fullname != _WATCHED:
            return None
        for finder in sys.meta_path:
            if getattr(finder, _MARKER, False) or not hasattr(finder, "find_spec"):
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
    elif not any(getattr(f, _MARKER, False) for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterImport())


try:
    install()
except Exception as exc:  # noqa: BLE001
    _warn(exc)
