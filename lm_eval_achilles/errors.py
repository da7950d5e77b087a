"""The one exception type users see: a clear, one-line message about bad input.

The CLI turns it into ``achilles: error: <message>`` and exit code 2; the Python API lets it propagate.
"""


class AchillesError(ValueError):
    """Bad input or an impossible request (unknown module, wrong mask, missing file ...)."""
