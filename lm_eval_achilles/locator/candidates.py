"""Which modules are candidates for critical neurons (docs/method.md, "Candidate modules")."""

from __future__ import annotations

import fnmatch
import re

from torch import nn

from lm_eval_achilles.errors import AchillesError

#: A module is a candidate when its lower-cased path contains one of these (the paper's filter).
KEYWORDS = ("mlp", "ffn", "feed_forward", "attention", "self_attn")


def candidate_modules(model: nn.Module, select: str | None = None) -> list[str]:
    """Leaf modules (or Linear/LayerNorm) whose path contains a paper keyword, in ``named_modules`` order.

    ``select`` narrows the set: comma-separated globs (``*down_proj,*.up_proj``) or ``re:<regex>``.
    """
    names = [
        name
        for name, module in model.named_modules()
        if name
        and any(k in name.lower() for k in KEYWORDS)
        and (not list(module.children()) or isinstance(module, (nn.Linear, nn.LayerNorm)))
    ]
    if select:
        if select.startswith("re:"):
            try:
                pattern = re.compile(select[3:])
            except re.error as exc:
                raise AchillesError(f"bad module regex {select[3:]!r}: {exc}") from exc
            names = [n for n in names if pattern.search(n)]
        else:
            globs = [g.strip() for g in select.split(",") if g.strip()]
            names = [n for n in names if any(fnmatch.fnmatchcase(n, g) for g in globs)]
        if not names:
            raise AchillesError(f"no candidate module matches {select!r}")
    if not names:
        raise AchillesError("the model has no candidate modules (no mlp/attention leaf modules found)")
    return names
