"""One module per ``achilles`` subcommand (see ``lm_eval_achilles.cli``)."""
