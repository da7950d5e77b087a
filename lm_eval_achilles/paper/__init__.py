"""Reproducing the paper: ``achilles report`` (its Figures 1 and 2 for one mask), ``achilles demo`` (the
whole story on the embedded model), the figures, and the ablation studies (:mod:`.studies`)."""
