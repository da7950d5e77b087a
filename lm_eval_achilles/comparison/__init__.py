"""Original vs masked: run both conditions in lm-eval, pair the per-document scores, test, write tables,
and gate CI on the result.

- :mod:`.conditions` runs the unmasked original and the masked model with identical settings;
- :mod:`.runs` reads lm-eval output folders; :mod:`.pairing` pairs their documents;
- :mod:`.metrics` scores each metric with a paired test (:mod:`.stats`) and compares two whole runs;
- :mod:`.tables` writes ``comparison.json`` / ``comparison.md``; :mod:`.plots` draws the bar chart;
- :mod:`.check` is the CI gate (``achilles check``).
"""
