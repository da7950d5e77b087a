"""``achilles report``: the paper's figures for one model, as PNGs and a markdown page.

- **Figure 2** (from the mask file alone): the phase-transition curve - perplexity on the probe text
  against the number of masked neurons, log scale, with the epsilon threshold and the critical-set size
  marked - and the layer x module distribution of the critical set (down_proj highlighted).
- **Figure 1** (needs the model): probability and rank of the answer token ("Paris", first token of
  " Paris") for "What is the capital of France?" as the ranked neurons are masked cumulatively. The
  steps go past the critical set by a few ranked neurons, so a one-neuron critical set still gives a
  readable curve.
- **Tables 7-9**: greedy responses to the paper's five factual questions before and after masking the
  critical set.

The question is put through the tokenizer's chat template when it has one (an instruct model answers
the user turn), followed by the answer prefix "The capital of France is", so that the next token is
where the answer goes - the probability then measures what the paper's panel shows.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lm_eval_achilles.errors import AchillesError
from lm_eval_achilles.formatting import code_cell, fmt, markdown_table
from lm_eval_achilles.jsonio import write_json_atomic, write_text_atomic
from lm_eval_achilles.locator.config import LocatorConfig
from lm_eval_achilles.mask.mask_file import MaskFile, Neuron, distinct

QUESTIONS = (
    "What is the capital of France?",
    "Who wrote Romeo and Juliet?",
    "What is 2 + 2?",
    "What language is spoken in Brazil?",
    "What is the largest planet in our solar system?",
)
FIGURE1_QUESTION = "What is the capital of France?"
FIGURE1_PREFIX = "The capital of France is"
FIGURE1_ANSWER = " Paris"

_LAYER_RE = re.compile(r"\.(\d+)(?:\.|$)")


def layer_of(module: str) -> int | None:
    """Layer index of a module path (the first numeric path component), e.g. 11 for model.layers.11.mlp."""
    m = _LAYER_RE.search(module)
    return int(m.group(1)) if m else None


def module_kind(module: str) -> str:
    """The path after the layer index (``mlp.down_proj``), or the whole path outside the layers."""
    m = _LAYER_RE.search(module)
    return module[m.end() :] or module if m else module


def layer_module_counts(neurons: Sequence[Neuron]) -> dict[int, dict[str, int]]:
    """counts[layer][module kind] over distinct neurons; modules outside the layer stack go to layer -1."""
    counts: dict[int, dict[str, int]] = {}
    for n in distinct(neurons):
        layer = layer_of(n.module)
        layer = -1 if layer is None else layer
        per = counts.setdefault(layer, {})
        kind = module_kind(n.module)
        per[kind] = per.get(kind, 0) + 1
    return counts


def count_layers(model=None, mask: MaskFile | None = None) -> int:
    """Number of transformer layers: from the model config, else the deepest layer the ranking mentions."""
    cfg = getattr(model, "config", None)
    for attr in ("num_hidden_layers", "n_layer", "num_layers"):
        value = getattr(cfg, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    layers = [layer_of(r.module) for r in (mask.ranking if mask else [])]
    layers = [x for x in layers if x is not None]
    return max(layers) + 1 if layers else 1


# --------------------------------------------------------------------------- model-based parts


def prompt_format(tokenizer) -> str:
    """How :func:`chat_prompt` puts a question to this tokenizer's model, in words for the report."""
    return (
        "the chat template"
        if getattr(tokenizer, "chat_template", None)
        else "`Question: …\\nAnswer:` (no chat template)"
    )


def chat_prompt(tokenizer, question: str, prefix: str = "") -> str:
    """The question as the model's user turn (chat template when the tokenizer has one), plus ``prefix``."""
    template = getattr(tokenizer, "chat_template", None)
    if template:
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True
        )
    else:
        text = f"Question: {question}\nAnswer:"
    if prefix:
        text = text + prefix if template else text + " " + prefix
    return text


@dataclass
class Step:
    n: int
    prob: float
    rank: int
    top: list[tuple[str, float]]
    neuron: Neuron | None  # the neuron added at this step

    def to_json(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "prob": self.prob,
            "rank": self.rank,
            "top": [[t, p] for t, p in self.top],
            "neuron": None if self.neuron is None else [self.neuron.module, self.neuron.channel],
        }


def answer_token_steps(
    loaded,
    mask: MaskFile,
    n_max: int,
    question: str = FIGURE1_QUESTION,
    prefix: str = FIGURE1_PREFIX,
    answer: str = FIGURE1_ANSWER,
    scale: float = 0.0,
    top_k: int = 8,
) -> tuple[list[Step], str]:
    """Probability and rank (1 = most probable) of the answer's first token with the first n distinct
    ranked neurons masked, n = 0..n_max. Returns the steps and the answer token as text."""
    import torch

    from lm_eval_achilles.mask.masking import masked

    tok, model = loaded.tokenizer, loaded.model
    answer_ids = tok(answer, add_special_tokens=False).input_ids
    if not answer_ids:
        raise AchillesError(f"the answer {answer!r} encodes to no tokens")
    target = int(answer_ids[0])
    ids = tok(chat_prompt(tok, question, prefix), return_tensors="pt").input_ids.to(loaded.device)
    order = distinct(r.neuron for r in mask.ranking)
    if not order:
        order = distinct(mask.neurons)
    n_max = min(n_max, len(order))
    steps = []
    for n in range(n_max + 1):
        with torch.no_grad(), masked(model, order[:n], scale=scale):
            logits = model(input_ids=ids, use_cache=False).logits[0, -1].float()
        logp = torch.log_softmax(logits, dim=-1)
        prob = float(logp[target].exp())
        rank = int((logp > logp[target]).sum()) + 1
        top = torch.topk(logp, top_k)
        steps.append(
            Step(
                n=n,
                prob=prob,
                rank=rank,
                neuron=order[n - 1] if n else None,
                top=[(tok.decode([int(i)]), float(v.exp())) for v, i in zip(top.values, top.indices)],
            )
        )
    return steps, tok.decode([target])


def responses(
    loaded,
    neurons: Sequence[Neuron],
    questions: Sequence[str] = QUESTIONS,
    max_new_tokens: int = 32,
    scale: float = 0.0,
) -> list[dict[str, str]]:
    """Greedy answers to ``questions`` without and with ``neurons`` masked (the paper's Tables 7-9).

    All questions go through ``generate`` as one left-padded batch per condition (the mask applies to
    every row), so the table costs two generation calls."""
    import torch

    from lm_eval_achilles.mask.masking import masked

    tok, model = loaded.tokenizer, loaded.model
    prompts = [chat_prompt(tok, q) for q in questions]
    side = tok.padding_side
    tok.padding_side = "left"
    try:
        enc = tok(prompts, return_tensors="pt", padding=True)
    finally:
        tok.padding_side = side
    ids = enc.input_ids.to(loaded.device)
    attn = enc.attention_mask.to(loaded.device)
    answers = []
    for ns in ([], list(neurons)):
        with torch.no_grad(), masked(model, ns, scale=scale):
            out = model.generate(
                ids, attention_mask=attn, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tok.pad_token_id
            )
        answers.append([tok.decode(row[ids.shape[1] :], skip_special_tokens=True).strip() for row in out])
    return [{"question": q, "original": a, "masked": b} for q, a, b in zip(questions, answers[0], answers[1])]


# --------------------------------------------------------------------------- the page


def build_report(
    mask: MaskFile,
    out_dir: str | Path,
    loaded=None,
    model_name: str | None = None,
    extra_steps: int = 4,
    max_new_tokens: int = 32,
    questions: Sequence[str] = QUESTIONS,
    mask_path: str | Path | None = None,
) -> dict[str, Path]:
    """Write the plots, ``report.json`` and ``report.md`` into ``out_dir``. Without ``loaded`` (a
    :class:`~lm_eval_achilles.models.loading.LoadedModel`) only the mask-based Figure 2 is produced."""
    from lm_eval_achilles.paper.figures import answer_token_curve, layer_module_bars, ppl_curves

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    c = mask.critical
    name = model_name or mask.model.name_or_path
    from lm_eval_achilles.models.named import NAMED_MODELS

    if name in NAMED_MODELS:  # a short name recorded in the mask file: show the full one
        name = NAMED_MODELS[name].display_name
    eps = LocatorConfig.from_record(mask.locator).epsilon
    found = c.size > 0
    n_crit = len(mask.neurons) if found else None
    paths: dict[str, Path] = {}
    if not c.curve:
        raise AchillesError("the mask file has an empty critical.curve; nothing to plot")
    paths["phase_transition"] = ppl_curves(
        {name: c.curve},
        out / "phase_transition.png",
        title=f"Phase transition: {name}",
        threshold_ppl=c.baseline_ppl * 10**eps,
        critical_n=c.size if found else None,
    )
    n_layers = count_layers(getattr(loaded, "model", None), mask)
    counts = layer_module_counts(mask.neurons)
    paths["layers"] = layer_module_bars(
        counts,
        n_layers,
        out / "layer_module.png",
        title=f"Critical neurons by layer and module ({len(mask.neurons)} in all)",
    )
    data: dict[str, Any] = {
        "model": name,
        "mask": str(mask_path) if mask_path else None,
        "critical": {
            "size": c.size,
            "neurons": [[n.module, n.channel] for n in mask.neurons],
            "baseline_ppl": c.baseline_ppl,
            "masked_ppl": c.masked_ppl,
            "delta": c.delta,
            "epsilon": eps,
            "curve": c.curve,
        },
        "minimal": mask.minimal.to_json() if mask.minimal is not None else None,
        "layer_module": {str(k): v for k, v in sorted(counts.items())},
        "n_layers": n_layers,
    }
    if loaded is not None:
        n_max = (c.size if found else 0) + extra_steps
        steps, answer_tok = answer_token_steps(loaded, mask, n_max, scale=LocatorConfig.from_record(mask.locator).scale)
        paths["answer_token"] = answer_token_curve(
            [s.to_json() for s in steps],
            out / "answer_token.png",
            answer=answer_tok,
            critical_n=n_crit,
            title=f"P({answer_tok!r} | {FIGURE1_QUESTION!r} ... {FIGURE1_PREFIX!r})",
        )
        data["figure1"] = {
            "question": FIGURE1_QUESTION,
            "prefix": FIGURE1_PREFIX,
            "answer_token": answer_tok,
            "prompt": chat_prompt(loaded.tokenizer, FIGURE1_QUESTION, FIGURE1_PREFIX),
            "prompt_format": prompt_format(loaded.tokenizer),
            "steps": [s.to_json() for s in steps],
        }
        data["responses"] = {
            "max_new_tokens": max_new_tokens,
            "prompt_format": prompt_format(loaded.tokenizer),
            "masked_neurons": len(mask.neurons),
            "rows": responses(loaded, mask.neurons, questions, max_new_tokens) if mask.neurons else [],
        }
    paths["json"] = out / "report.json"
    write_json_atomic(paths["json"], data)  # standard JSON: an infinite perplexity is the string "inf"
    paths["md"] = out / "report.md"
    write_text_atomic(paths["md"], report_markdown(data, mask, paths))
    return paths


def report_markdown(data: dict[str, Any], mask: MaskFile, paths: dict[str, Path]) -> str:
    c = mask.critical
    loc = LocatorConfig.from_record(mask.locator)
    lines = [f"# Critical neurons of {data['model']}", ""]
    if data.get("mask"):
        lines.append(
            f"Mask file: `{data['mask']}` (method {loc.method}, alpha {loc.alpha}, "
            f"K {loc.samples}, seed {loc.seed}, epsilon {loc.epsilon}, granularity {loc.granularity})."
        )
        lines.append("")
    if c.size > 0:
        lines.append(
            f"**Critical set: {len(mask.neurons)} neuron(s)** — masking them takes the probe-text perplexity "
            f"from {fmt(c.baseline_ppl)} to {fmt(c.masked_ppl)} (Δ = {c.delta:.2f} orders of magnitude; "
            f"threshold ε = {data['critical']['epsilon']})."
        )
    else:
        lines.append(f"**No critical set found** ({c.stopping_reason}); best Δ = {c.delta:.2f}.")
    m = mask.minimal
    if m is not None:
        proof = "verified minimal" if m.verified_minimal else f"**not** verified minimal ({m.stopping_reason})"
        lines += [
            "",
            f"**Minimal set (`achilles locate --minimize`): {len(m.neurons)} neuron(s)**, {proof} — "
            f"Δ = {m.delta:.2f} (PPL {fmt(m.baseline_ppl)} → {fmt(m.masked_ppl)}); no single neuron can be "
            f"removed with Δ staying ≥ ε. Found by {m.method} from the {m.start_size}-channel prefix, "
            f"{m.sets_evaluated} candidate sets in {m.forward_passes} batched forwards ({m.seconds:.1f} s). "
            "Marked ★ below.",
        ]
    in_min = set(m.neurons) if m is not None else set()
    rows = [
        (i, f"`{n.module}`", layer_of(n.module), f"{n.channel}{' ★' if n in in_min else ''}")
        for i, n in enumerate(mask.neurons, 1)
    ]
    rows += [
        ("★", f"`{n.module}`", layer_of(n.module), f"{n.channel} (beyond the prefix)")
        for n in (m.neurons if m is not None else [])
        if n not in set(mask.neurons)
    ]
    lines += ["", markdown_table(("#", "module", "layer", "channel"), rows, align="rlrr")]
    lines += [
        "",
        "## Phase transition and where the critical neurons are (the paper's Figure 2)",
        "",
        f"![phase transition]({paths['phase_transition'].name})",
        "",
        f"![layer x module]({paths['layers'].name})",
        "",
        "Perplexity: " + ", ".join(f"{int(n)} masked: {fmt(p)}" for n, p in c.curve),
        "",
    ]
    if "figure1" in data:
        f1 = data["figure1"]
        lines += [
            "## The answer token as neurons are masked one by one (the paper's Figure 1)",
            "",
            f"Prompt: {f1['question']!r} through {f1.get('prompt_format', 'the chat template')}, followed by "
            f"{f1['prefix']!r}; "
            f"answer token {f1['answer_token']!r}. Neurons are masked cumulatively in ranking order "
            "(the steps after the critical set show the next ranked neurons).",
            "",
            f"![answer token]({paths['answer_token'].name})",
            "",
        ]
        rows = []
        for s in f1["steps"]:
            added = "—" if s["neuron"] is None else f"`{s['neuron'][0]}` ch {s['neuron'][1]}"
            top = ", ".join(f"{code_cell(t, 20)} {p:.3f}" for t, p in s["top"][:4])
            rows.append((s["n"], added, f"{s['prob']:.3g}", s["rank"], top))
        columns = ("neurons masked", "added neuron", "P(answer)", "rank", "top tokens")
        lines += [markdown_table(columns, rows, align="rlrrl"), ""]
    if data.get("responses", {}).get("rows"):
        r = data["responses"]
        lines += [
            f"## Responses before and after masking the {r['masked_neurons']} critical neuron(s) "
            "(the paper's Tables 7-9)",
            "",
            f"Greedy decoding, prompt through {r.get('prompt_format', 'the chat template')}, at most "
            f"{r['max_new_tokens']} new tokens.",
            "",
        ]
        rows = [(row["question"], code_cell(row["original"]), code_cell(row["masked"])) for row in r["rows"]]
        lines += [markdown_table(("question", "original response", "masked response"), rows), ""]
    return "\n".join(lines)
