"""Fine-tuning only selected neurons (``achilles finetune``, docs/finetune.md): :mod:`.neurons` (which slices a
neuron owns), :mod:`.delta` (the trainable row copies and the ``achilles-delta/1`` artifact), :mod:`.train`
(the loop every arm shares), :mod:`.data` (JSONL and GSM-Symbolic data), :mod:`.baselines` (full, LoRA)."""
