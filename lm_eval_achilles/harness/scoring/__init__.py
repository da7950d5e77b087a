"""Pure scoring functions for the paper's evaluation protocols (docs/protocols.md).

One module per concern, no lm-eval or torch imports at module level, so the scoring logic can be
unit-tested on plain strings and reused outside lm-eval. Every task's module has ``prompt(doc)`` and
``score(doc, response)``; the task table ``lm_eval_achilles.harness.tasks`` says which module scores which task.

- ``quality``    the two response-quality ("meaningful") filters (docs/protocols.md, "The quality filter")
- ``mmlu_pro``   prompt + strict "The answer is (X)" extraction
- ``gpqa``       MD5-seeded choice shuffle + prompt + three-step extraction
- ``humaneval``  code extraction and the pass@1 program
- ``code_exec``  running that program (opt-in only) in a fresh interpreter with ``code_eval``'s guard
- ``math500``    answer extraction (nested ``\\boxed{}``) + three-level grading
- ``sympy_check`` MATH-500's sympy equivalence check: time limit and guards against huge computations
- ``simpleqa``   prompt, first-line answer, normalisation, contains/exact match
- ``mgsm``       six-category reasoning score, numeric extraction, gold from ``answer_number``
- ``ifeval``     lm-eval's official IFEval checkers + the quality filter, offline-safe NLTK handling
- ``perplexity`` text selection, 512-token truncation spans and token-weighted perplexity
- ``aggregate``  aggregation helpers shared by the lm-eval tasks
"""
