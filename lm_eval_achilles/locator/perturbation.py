"""Stage 1 of the paper (Algorithm 1): importance = mean |clean - noisy| activation over K noise draws.

Streaming (docs/method.md, "Stage 1"): one clean forward records each candidate module's output once; the K
noisy inputs go through the model in batches, and a forward hook adds ``|noisy - clean|`` summed over
the batch into a running sum per module. Memory is the model, one clean activation set and one batch
of activations; K copies are never kept.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from tqdm.auto import tqdm

from lm_eval_achilles.locator.hooks import first_tensor, hooked


@torch.no_grad()
def perturbation_scores(
    model,
    input_ids: torch.Tensor,
    modules: Sequence[str],
    alpha: float = 5.0,
    samples: int = 100,
    seed: int = 42,
    batch_size: int = 25,
    progress: bool = True,
) -> dict[str, torch.Tensor]:
    """Per module a [T, C] float32 tensor: mean absolute activation change under Gaussian noise of
    scale ``alpha`` added to the input embeddings at every position (BOS included), K = ``samples``.
    Keys are ordered as the modules fire in the forward pass. Deterministic for a seed and batch size."""
    device = next(model.parameters()).device
    ids = input_ids.to(device)
    clean: dict[str, torch.Tensor] = {}
    sums: dict[str, torch.Tensor] = {}
    state = {"noisy": False}

    def make_hook(name):
        def hook(_m, _inp, output):
            t = first_tensor(output)
            if not isinstance(t, torch.Tensor) or t.dim() != 3:
                return None
            if not state["noisy"]:
                clean[name] = t[0].detach().clone()
                sums[name] = torch.zeros(t.shape[1:], dtype=torch.float32, device=t.device)
            elif name in clean:
                # |noisy - clean| summed over the batch: the difference in the model's dtype (as the
                # authors' fp16 code), the L1 reduction fused and accumulated in float32
                diff = torch.sub(t, clean[name])
                sums[name] += torch.linalg.vector_norm(diff, ord=1, dim=0, dtype=torch.float32)
            return None

        return hook

    with hooked(model, {name: make_hook(name) for name in modules}):
        model(input_ids=ids, use_cache=False, logits_to_keep=1)
        state["noisy"] = True
        embeds = model.get_input_embeddings()(ids)
        gen = torch.Generator(device=device).manual_seed(seed)
        with tqdm(total=samples, desc="stage 1: noisy samples", disable=not progress, unit="sample") as bar:
            for start in range(0, samples, batch_size):
                b = min(batch_size, samples - start)
                noise = torch.randn((b, *embeds.shape[1:]), generator=gen, device=device, dtype=torch.float32)
                noisy = (embeds.float() + alpha * noise).to(embeds.dtype)
                model(inputs_embeds=noisy, use_cache=False, logits_to_keep=1)
                bar.update(b)
    return {name: sums[name] / samples for name in clean}
