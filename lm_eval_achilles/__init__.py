"""lm_eval_achilles: locate the critical neurons of a causal LM and evaluate it with and without them.

Importing this package is cheap: torch, transformers and lm-eval are imported only by the submodules
that need them (``locate``, ``hooks``, ``lm_model`` ...).
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
