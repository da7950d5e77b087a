"""Fluency of the generated answers, judged by the *original* model: ``response_nll`` and ``disfluent_rate``.

The paper's quality filter (``meaningless_rate``) looks at an answer's form only: empty, too short, a
repeated phrase. A collapsed model's word salad (``" whoaughteredelescopeaughtered…"``) passes it, so a
masked model can even look *more* meaningful than the original. These two metrics see word salad:

- ``response_nll``: the mean negative log-likelihood per token of each response, given its prompt,
  under the **unmasked** model (nats per token; lower = more fluent). The original model's own greedy
  answers sit low; text it would never write sits high.
- ``disfluent_rate``: the share of responses whose ``response_nll`` exceeds :data:`DISFLUENT_NLL`.

Both are computed by ``achilles compare`` (and ``demo``) after the two lm-eval runs, from the logged
samples, in batched forwards with the mask off, and are paired per document like every other metric.
What they miss: a fluent but wrong answer scores as fluent; an answer in a style the original model
would not use (another language, a template it was not trained on) scores as disfluent; and because
the judge is the original model, they measure "sounds like the original", not absolute quality
(docs/protocols.md).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from lm_eval_achilles.comparison.metrics import score_metric
from lm_eval_achilles.comparison.pairing import PairedMetric
from lm_eval_achilles.comparison.runs import Run
from lm_eval_achilles.models.forward import input_device

#: A response is disfluent when its mean token NLL under the original model exceeds this many nats
#: (perplexity e^5 ≈ 148; ordinary WikiText scores about 3.7 under the embedded model). Measured on the
#: committed demo run (34 responses per condition): the embedded model's own answers 0.23-1.05, the
#: masked model's 2.56-11.97, 31 of 34 above 5 (docs/protocols.md, "Fluency").
DISFLUENT_NLL = 5.0
#: Longest prompt + response scored; longer prompts keep their end.
MAX_TOKENS = 2048
METRICS = ("response_nll", "disfluent_rate")


def generations(run: Run, task: str) -> dict[Any, tuple[str, str]]:
    """doc_id -> (prompt, raw response) of a generative task's logged samples (the model's own output,
    before any answer-extraction filter); empty for a non-generative task."""
    out: dict[Any, tuple[str, str]] = {}
    for rec in run.samples.get(task, []):
        args = rec.get("arguments") or {}
        first = args.get("gen_args_0") if isinstance(args, dict) else None
        if not isinstance(first, dict) or not isinstance(first.get("arg_1"), dict):
            return {}  # loglikelihood requests: not a generative task
        resps = rec.get("resps") or [[""]]
        response = resps[0][0] if isinstance(resps[0], list) else resps[0]
        out.setdefault(rec["doc_id"], (str(first.get("arg_0", "")), str(response)))
    return out


@torch.no_grad()
def response_nlls(model, tokenizer, pairs: Sequence[tuple[str, str]], batch_size: int = 8) -> list[float]:
    """Mean NLL per response token given its prompt, under ``model`` as it is (call it unmasked). Sequences
    are left-padded with position ids from the attention mask, so each scores as if alone; only the
    response positions' logits are computed (``logits_to_keep``). An empty response is scored as the
    end-of-sequence token (the cost of stopping at once)."""
    device = input_device(model)
    eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    encoded = []  # (token ids, how many of the last ones are the response's)
    for prompt, response in pairs:
        r = (tokenizer(response, add_special_tokens=False).input_ids or [eos])[: MAX_TOKENS - 1]
        p = tokenizer(prompt, add_special_tokens=True).input_ids[-(MAX_TOKENS - len(r)) :]
        encoded.append((p + r, min(len(r), len(p + r) - 1)))
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i][0]))
    out = [math.nan] * len(encoded)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        seqs = [encoded[i][0] for i in idx]
        lens = [encoded[i][1] for i in idx]
        width, keep = max(map(len, seqs)), max(lens)
        ids = torch.full((len(seqs), width), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, s in enumerate(seqs):
            ids[row, width - len(s) :] = torch.tensor(s)
            mask[row, width - len(s) :] = 1
        positions = (mask.cumsum(1) - 1).clamp(min=0)
        logits = model(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            position_ids=positions.to(device),
            use_cache=False,
            logits_to_keep=keep + 1,
        ).logits[:, :-1]
        logp = torch.log_softmax(logits.float(), dim=-1)
        target = ids[:, width - keep :].to(device)
        nll = -logp.gather(-1, target[..., None]).squeeze(-1).double().cpu()
        for row, (i, n) in enumerate(zip(idx, lens)):
            out[i] = float(nll[row, keep - n :].mean()) if n > 0 else math.nan
    return out


def fluency_rows(original: Run, masked: Run, loaded, tasks: Sequence[str] | None = None, iters: int = 10_000,
                 seed: int = 1234, threshold: float = DISFLUENT_NLL) -> list[dict[str, Any]]:  # fmt: skip
    """``response_nll`` and ``disfluent_rate`` rows (comparison.json format) for every generative task
    both runs logged, scored by ``loaded`` (the original model, unmasked)."""
    rows = []
    names = list(tasks) if tasks else sorted(set(original.samples) & set(masked.samples))
    for task in names:
        a, b = generations(original, task), generations(masked, task)
        ids = [d for d in sorted(a, key=str) if d in b]
        if not ids:
            continue
        scores = response_nlls(loaded.model, loaded.tokenizer, [a[d] for d in ids] + [b[d] for d in ids])
        o, m = scores[: len(ids)], scores[len(ids) :]
        pm = PairedMetric(task, "none", "response_nll", ids, o, m)
        rows.append(score_metric(pm, "mean", False, iters=iters, seed=seed).to_json())
        flags = PairedMetric(
            task, "none", "disfluent_rate", ids, [x > threshold for x in o], [x > threshold for x in m]
        )
        row = score_metric(flags, "mean", False, iters=iters, seed=seed).to_json()
        row["threshold"] = threshold
        rows.append(row)
    return rows


def add_fluency(comparison: dict[str, Any], original: Run, masked: Run, loaded, iters: int, seed: int) -> None:
    """Insert the fluency rows into ``comparison`` (in place), each task's after its other rows."""
    new = fluency_rows(original, masked, loaded, iters=iters, seed=seed)
    rows = comparison["rows"]
    for row in new:
        last = max((i for i, r in enumerate(rows) if r["task"] == row["task"]), default=len(rows) - 1)
        rows.insert(last + 1, row)
    comparison.setdefault("fluency", {"judge": loaded.display_name, "disfluent_nll": DISFLUENT_NLL})
