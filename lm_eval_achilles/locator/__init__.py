"""The paper's method: find the critical neurons of a model and mask them.

- :mod:`.locate` runs both stages and returns a :class:`~.mask_file.MaskFile`;
- :mod:`.perturbation` is stage 1 (noise on the input embeddings, mean |activation change|),
  :mod:`.rankers` turns scores into a ranking and holds the baseline rankers;
- :mod:`.search` is stage 2 (the shortest ranking prefix whose masking raises perplexity by epsilon),
  on top of :mod:`.perplexity`;
- :mod:`.candidates` picks the modules. Masks themselves (file format, hooks, fold) live one layer
  below, in :mod:`lm_eval_achilles.mask`.

See docs/method.md.
"""
