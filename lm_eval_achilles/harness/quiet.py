"""Console noise lm-eval makes because of how this package's tasks are built, and only that.

lm-eval warns "Custom kwargs can be passed to `--metadata` ..." once per task whose data comes from a
``custom_dataset`` function, which every ``achilles_*`` task's does by design (the loader reads
``--metadata data_dir``); the filter drops exactly those records for ``achilles_*`` tasks and leaves
every other task's warning alone."""

from __future__ import annotations

import logging

_TASK_LOGGER = "lm_eval.api.task"
_NOISE = "Custom kwargs can be passed to `--metadata`"


class _OurTasksMetadataHint(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        return not (msg.startswith("achilles_") and _NOISE in msg)


def install() -> None:
    """Idempotent: add the filter to lm-eval's task logger once."""
    logger = logging.getLogger(_TASK_LOGGER)
    if not any(isinstance(f, _OurTasksMetadataHint) for f in logger.filters):
        logger.addFilter(_OurTasksMetadataHint())
