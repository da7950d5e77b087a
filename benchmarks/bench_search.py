"""Stage 2, galloping against the paper's linear walk, side by side on the committed masks and on a robust model.

    python benchmarks/bench_search.py [--masks results/...json ...] [--robust] [--device cpu]

For every mask file (default: every ``mask*.json`` under ``results/`` that ``git ls-files`` lists, plus the
``track/masks`` ones), the model it was located on is loaded (masks whose model folder is missing are
listed as skipped), and stage 2 runs twice on the file's own ranking and settings (probe/test text,
epsilon, step, max_steps, scale, batch size, granularity): ``search="linear"`` then ``search="galloping"``,
each with a fresh memo. Printed per mask, as a Markdown table: the size the file records, each search's
answer, its batched forwards (masked sets; the baseline forward is not counted) and seconds, and whether
galloping saw a monotone curve.

``--robust``: a model with no critical set within the cap. The embedded model with its critical neuron
(``results/smollm2-135m-instruct/mask.json``) masked by hooks is ranked again by stage 1 (the paper's
settings), and both searches run on that ranking under the same mask: the linear walk evaluates all
``max_steps`` prefixes.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def committed_masks() -> list[Path]:
    out = subprocess.run(["git", "ls-files", "results"], cwd=ROOT, capture_output=True, text=True, check=True)
    names = [
        n for n in out.stdout.split() if n.endswith(".json") and (Path(n).name.startswith("mask") or "/masks/" in n)
    ]
    return [ROOT / n for n in sorted(names)]


def both(model, tok, mask, cfg, wrap=None):
    """Stage 2 by both searches on the mask's ranking: {search: SearchResult}."""
    import contextlib

    from lm_eval_achilles.defaults import MAX_PPL_TOKENS, MAX_PROBE_TOKENS
    from lm_eval_achilles.locator.perplexity import encode
    from lm_eval_achilles.locator.search import search_ranking

    probe = encode(tok, cfg.text, max_tokens=MAX_PROBE_TOKENS, what="probe text")
    test = probe if cfg.test_text is None else encode(tok, cfg.test_text, MAX_PPL_TOKENS, what="test text")
    out = {}
    for search in ("linear", "galloping"):
        with wrap() if wrap else contextlib.nullcontext():
            out[search] = search_ranking(model, test[:, :MAX_PPL_TOKENS], mask.ranking, replace(cfg, search=search), {})
    return out


def row(label, recorded, res) -> str:
    lin, gal = res["linear"], res["galloping"]

    def ans(r):
        return str(r.size) if r.size else f"none ({r.stopping_reason})"

    same = "yes" if (lin.size, lin.neurons) == (gal.size, gal.neurons) else "**NO**"
    return (
        f"| {label} | {recorded} | {ans(lin)} | {ans(gal)} | {same} | {lin.forward_passes} | {gal.forward_passes} "
        f"| {lin.seconds:.2f} | {gal.seconds:.2f} | {gal.monotone}{' — ' + gal.note if gal.note else ''} |"
    )


HEADER = (
    "| mask (model, probe) | recorded size | linear answer | galloping answer | same set | linear forwards "
    "| galloping forwards | linear s | galloping s | galloping monotone |\n|---|---|---|---|---|---|---|---|---|---|"
)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--masks", nargs="*", help="mask files (default: the committed ones)")
    ap.add_argument("--robust", action="store_true", help="also the robust-model case (no critical set)")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    from lm_eval_achilles.locator.config import LocatorConfig
    from lm_eval_achilles.mask.mask_file import load_mask
    from lm_eval_achilles.models.loading import load_model

    print(f"load average before: {os.getloadavg()}", flush=True)
    masks = [Path(m).resolve() for m in args.masks] if args.masks is not None else committed_masks()
    by_model: dict[str, list] = {}
    for path in masks:
        mask = load_mask(path)
        by_model.setdefault(mask.model.name_or_path, []).append((path, mask))
    lines, skipped = [HEADER], []
    for name, items in by_model.items():
        if name.startswith("/") and not Path(name).exists():
            skipped += [f"{p.relative_to(ROOT)} (model folder {name} not found)" for p, _ in items]
            continue
        dtype = items[0][1].locator.get("dtype", "float32")
        t = time.perf_counter()
        loaded = load_model(name, dtype=dtype, device=args.device)
        print(f"loaded {name} ({dtype}) in {time.perf_counter() - t:.1f} s", flush=True)
        for path, mask in items:
            cfg = LocatorConfig.from_record(mask.locator, progress=False)
            res = both(loaded.model, loaded.tokenizer, mask, cfg)
            label = f"{path.relative_to(ROOT)} ({name}, {cfg.granularity}, probe {'default' if cfg.text == LocatorConfig().text else 'custom'})"
            lines.append(row(label, mask.critical.size or f"none ({mask.critical.stopping_reason})", res))
            print(lines[-1], flush=True)
        del loaded
    if args.robust:
        lines.append(robust(args.device))
        print(lines[-1], flush=True)
    print(f"load average after: {os.getloadavg()}")
    print("\n" + "\n".join(lines))
    if skipped:
        print("\nskipped: " + "; ".join(skipped))
    return 0


def robust(device: str) -> str:
    from lm_eval_achilles.defaults import MAX_PROBE_TOKENS
    from lm_eval_achilles.locator.candidates import candidate_modules
    from lm_eval_achilles.locator.config import LocatorConfig
    from lm_eval_achilles.locator.perplexity import encode
    from lm_eval_achilles.locator.rankers import get_ranker
    from lm_eval_achilles.mask.mask_file import load_mask
    from lm_eval_achilles.mask.masking import masked
    from lm_eval_achilles.models.loading import load_model

    critical = load_mask(ROOT / "results/smollm2-135m-instruct/mask.json")
    loaded = load_model(None, dtype="float32", device=device)
    model, tok = loaded.model, loaded.tokenizer
    cfg = LocatorConfig(progress=False)
    probe = encode(tok, cfg.text, max_tokens=MAX_PROBE_TOKENS, what="probe text")
    t = time.perf_counter()
    with masked(model, critical.neurons):
        ranking = get_ranker(cfg.method)(model, tok, probe, candidate_modules(model), cfg)
    print(f"robust: stage 1 on the masked embedded model in {time.perf_counter() - t:.1f} s", flush=True)
    ranked = replace(critical, ranking=ranking)
    res = both(model, tok, ranked, cfg, wrap=lambda: masked(model, critical.neurons))
    label = f"robust: embedded with {len(critical.neurons)} critical neuron masked, re-ranked (default probe)"
    return row(label, "-", res)


if __name__ == "__main__":
    raise SystemExit(main())
