"""The mask: which neurons are switched off, and how.

- :mod:`.mask_file` is the file format ``achilles-mask/1`` (neurons, the ranking, the critical and minimal
  sets, provenance);
- :mod:`.hooks` is the one owner of forward hooks (``hooked()`` + ``Recorder``);
- :mod:`.masking` applies a mask, by forward hooks (``masked``) or written into the weights (``folded``).

It sits below the locator: ``models -> mask -> locator -> harness -> ...``. See docs/method.md.
"""
