"""Training data for ``achilles finetune``: prompt/answer examples from a JSONL file, and GSM-Symbolic
math word problems generated offline with ``reasoning-gym`` (docs/finetune.md, "Data").

A JSONL line is either ``{"prompt": ..., "answer": ...}`` or ``{"messages": [{"role": ..., "content": ...},
...]}`` whose last message is the assistant's answer (the loss covers that message only). Every problem
with a file names its line.

GSM-Symbolic split (this project's choice): reasoning-gym has 85 working templates (question
generators). ``train``, ``validation`` and ``test_in`` use the templates numbered below
:data:`HELDOUT_FROM` with disjoint seed ranges (a question text that occurs in an earlier split is
skipped); ``test_heldout`` uses only the templates from :data:`HELDOUT_FROM` on, which training never
sees. So ``test_heldout`` measures transfer to new problem *kinds*, ``test_in`` new numbers of seen kinds.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from lm_eval_achilles.errors import AchillesError

#: Templates numbered from here on form ``test_heldout`` only.
HELDOUT_FROM = 70
SPLITS = ("train", "validation", "test_in", "test_heldout")
#: Seed offsets of the splits: far apart, so the seed ranges never overlap.
_SPLIT_SEED = {"train": 0, "validation": 10_000_000, "test_in": 20_000_000, "test_heldout": 30_000_000}
#: reasoning-gym appends this to every GSM-Symbolic question (kept, so prompts match its own datasets).
_SUFFIX = " Give the result as your final answer. Do not include units."


@dataclass(frozen=True)
class Example:
    """One training or evaluation item: the chat messages before the answer, and the answer text."""

    messages: tuple[tuple[str, str], ...]  # (role, content) pairs; the last role is "user"
    answer: str
    final: str | None = None  # the gold final answer (a number for GSM-Symbolic), when known

    @property
    def prompt(self) -> str:
        return self.messages[-1][1]


def _example(obj, where: str) -> Example:
    if not isinstance(obj, dict):
        raise AchillesError(f"{where}: expected a JSON object with prompt/answer or messages")
    final = obj.get("final")
    final = None if final is None else str(final)
    if "messages" in obj:
        msgs = obj["messages"]
        if not isinstance(msgs, list) or len(msgs) < 2:
            raise AchillesError(f"{where}: messages must be a list of at least two messages")
        pairs = []
        for i, m in enumerate(msgs):
            if not (isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)):
                raise AchillesError(f"{where}: messages[{i}] must have a string role and content")
            pairs.append((m["role"], m["content"]))
        if pairs[-1][0] != "assistant" or not pairs[-1][1].strip():
            raise AchillesError(f"{where}: the last message must be a non-empty assistant answer")
        return Example(tuple(pairs[:-1]), pairs[-1][1], final)
    missing = [k for k in ("prompt", "answer") if not isinstance(obj.get(k), str) or not obj[k].strip()]
    if missing:
        raise AchillesError(f"{where}: missing or empty field(s) {', '.join(missing)} (or give messages)")
    return Example((("user", obj["prompt"]),), obj["answer"], final)


def read_jsonl(path: str | Path) -> list[Example]:
    """Every example of a JSONL file; a missing, empty or malformed file is an :class:`AchillesError`
    naming the line."""
    p = Path(path)
    if not p.is_file():
        raise AchillesError(f"data file not found: {p}")
    out = []
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise AchillesError(f"data file {p} is not UTF-8 text ({exc.reason})") from None
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise AchillesError(f"{p}:{i}: not JSON ({exc.msg})") from None
        out.append(_example(obj, f"{p}:{i}"))
    if not out:
        raise AchillesError(f"data file {p} is empty (no JSONL lines)")
    return out


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def to_json(example: Example, **extra) -> dict:
    if len(example.messages) == 1 and example.messages[0][0] == "user":
        d = {"prompt": example.prompt, "answer": example.answer}
    else:
        d = {"messages": [{"role": r, "content": c} for r, c in example.messages + (("assistant", example.answer),)]}
    if example.final is not None:
        d["final"] = example.final
    return {**d, **extra}


def gsm_symbolic_templates() -> list[int]:
    """The working template numbers of reasoning-gym's GSM-Symbolic (its own list)."""
    gsm = _gsm_module()
    return list(gsm.tasks_ok)


def _gsm_module():
    try:
        from reasoning_gym.arithmetic.gsm_symbolic import gsm_symbolic
    except ImportError:
        raise AchillesError("GSM-Symbolic data needs reasoning-gym: pip install 'lm_eval_achilles[finetune]'") from None
    return gsm_symbolic


def gsm_symbolic(sizes: dict[str, int], seed: int = 0) -> dict[str, list[dict]]:
    """GSM-Symbolic items per split (see the module docstring): ``sizes`` maps split -> count. Each item
    is a JSON-ready dict with prompt, answer (the chain of thought ending ``#### N``), final (N), template
    and seed. A question text is never repeated, within or across splits (splits in :data:`SPLITS` order)."""
    from random import Random

    gsm = _gsm_module()
    generators = gsm.GSMSymbolicDataset(gsm.GSMSymbolicDatasetConfig(size=1, seed=0)).generators
    seen: set[str] = set()
    out: dict[str, list[dict]] = {}
    for split in SPLITS:
        if split not in sizes:
            continue
        size = int(sizes[split])
        templates = [t for t in gsm.tasks_ok if (t >= HELDOUT_FROM) == (split == "test_heldout")]
        base = _SPLIT_SEED[split] + 100_000 * int(seed)
        pick = Random(base)
        items: list[dict] = []
        for i in range(size * 3 + 20):
            if len(items) == size:
                break
            t = pick.choice(templates)
            ex = generators[t](Random(base + i), 1.0)
            prompt = ex["question"] + _SUFFIX
            if prompt in seen:
                continue
            seen.add(prompt)
            items.append(
                {
                    "prompt": prompt,
                    "answer": ex["metadata"]["answer_cot"],
                    "final": str(ex["answer"]),
                    "template": t,
                    "seed": base + i,
                }
            )
        if len(items) < size:
            raise AchillesError(f"could not generate {size} distinct GSM-Symbolic items for {split}")
        out[split] = items
    unknown = set(sizes) - set(SPLITS)
    if unknown:
        raise AchillesError(f"unknown split(s) {', '.join(sorted(unknown))}; choose from {', '.join(SPLITS)}")
    return out
