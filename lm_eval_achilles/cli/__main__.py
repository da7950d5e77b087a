"""``python -m lm_eval_achilles.cli`` = the ``achilles`` command."""

import sys

from lm_eval_achilles.cli import main

sys.exit(main())
