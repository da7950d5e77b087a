"""Synthetic documents for bench_eval.py (throughput only; the scores mean nothing)."""

import datasets

from lm_eval_achilles.defaults import PROBE_TEXT

SENTENCES = PROBE_TEXT.split(" . ")


def load_rolling(**_metadata):
    texts = [" . ".join(SENTENCES[i % len(SENTENCES) :] + SENTENCES) * 2 for i in range(32)]
    return {"test": datasets.Dataset.from_dict({"text": texts})}


def load_gen(**_metadata):
    return {"test": datasets.Dataset.from_dict({"prompt": [s + " ." for s in SENTENCES] * 2})}
