"""The training loop shared by every arm (selected rows, LoRA, full): the same data order, batches, loss,
schedule and optimizer, so arms differ only in *which* parameters the optimizer is given.

- Causal-LM loss on answer tokens only: the prompt (rendered with the tokenizer's chat template when it
  has one) gets label -100; the end-of-turn token belongs to the answer. The prompt's tokens must be a
  prefix of the full sequence's (checked).
- Logits are computed only from the first answer position of the batch on (``logits_to_keep``), which
  matters for large vocabularies.
- Batches: seeded shuffle, then sequences of similar length grouped (bucketing) to cut padding.
- AdamW, linear warm-up then cosine decay to 0, gradient clipping, gradient accumulation; bf16 autocast
  on CUDA. Loss per step = mean NLL per answer token of the step's sequences.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import torch

from lm_eval_achilles.errors import AchillesError
from lm_eval_achilles.finetune.data import Example
from lm_eval_achilles.validate import as_float, as_int


@dataclass
class TrainConfig:
    steps: int
    lr: float
    batch_size: int = 4
    grad_accum: int = 1
    warmup: int | None = None  # steps; None = 10 % of the steps
    weight_decay: float = 0.0
    clip: float = 1.0
    seed: int = 0
    max_length: int = 512
    bucket: int = 16  # batches per bucketing window
    progress: bool = True
    bf16: bool | None = None  # None = on for CUDA

    def __post_init__(self):
        self.steps = as_int(self.steps, "steps", minimum=1)
        self.lr = as_float(self.lr, "lr", positive=True)
        self.batch_size = as_int(self.batch_size, "batch_size", minimum=1)
        self.grad_accum = as_int(self.grad_accum, "grad_accum", minimum=1)
        if self.warmup is not None:
            self.warmup = as_int(self.warmup, "warmup", minimum=0)
        self.weight_decay = as_float(self.weight_decay, "weight_decay", minimum=0.0)
        self.clip = as_float(self.clip, "clip", positive=True)
        self.seed = as_int(self.seed, "seed", minimum=0)
        self.max_length = as_int(self.max_length, "max_length", minimum=2)
        self.bucket = as_int(self.bucket, "bucket", minimum=1)

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class Encoded:
    ids: list[int]
    n_prompt: int  # tokens before the answer


def encode(tokenizer, example: Example, max_length: int = 512) -> Encoded:
    """Token ids of prompt + answer, and how many of them are prompt."""
    msgs = [{"role": r, "content": c} for r, c in example.messages]
    if getattr(tokenizer, "chat_template", None):
        prompt = _ids(tokenizer.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True))
        full = _ids(
            tokenizer.apply_chat_template(msgs + [{"role": "assistant", "content": example.answer}], tokenize=True)
        )
        if full[: len(prompt)] != prompt:
            raise AchillesError("the chat template does not render the prompt as a prefix of prompt + answer")
    else:
        text = "\n".join(c for _, c in example.messages) + "\n"
        prompt = tokenizer(text).input_ids
        full = tokenizer(text + example.answer).input_ids + (
            [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
        )
        if full[: len(prompt)] != prompt:
            full = prompt + tokenizer(example.answer, add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
    if len(full) <= len(prompt):
        raise AchillesError("an example has an empty answer after tokenisation")
    return Encoded(full[:max_length], min(len(prompt), max_length - 1))


def _ids(out) -> list[int]:
    if hasattr(out, "keys") and "input_ids" in out:  # transformers 5 returns a BatchEncoding
        out = out["input_ids"]
    return list(out)


def batch_order(lengths: Sequence[int], cfg: TrainConfig) -> list[list[int]]:
    """Micro-batches for ``steps * grad_accum`` optimizer micro-steps: epochs of a seeded shuffle; within
    each window of ``bucket`` batches the sequences are sorted by length, then the batches shuffled."""
    rng = random.Random(cfg.seed)
    need = cfg.steps * cfg.grad_accum
    out: list[list[int]] = []
    while len(out) < need:
        order = list(range(len(lengths)))
        rng.shuffle(order)
        window = cfg.batch_size * cfg.bucket
        for start in range(0, len(order), window):
            chunk = sorted(order[start : start + window], key=lambda i: lengths[i])
            batches = [chunk[j : j + cfg.batch_size] for j in range(0, len(chunk), cfg.batch_size)]
            rng.shuffle(batches)
            out += batches
    return out[:need]


def collate(items: Sequence[Encoded], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded ids, attention mask and labels (-100 on prompt and padding)."""
    L = max(len(e.ids) for e in items)
    ids = torch.full((len(items), L), pad_id, dtype=torch.long)
    att = torch.zeros((len(items), L), dtype=torch.long)
    labels = torch.full((len(items), L), -100, dtype=torch.long)
    for i, e in enumerate(items):
        n = len(e.ids)
        ids[i, :n] = torch.tensor(e.ids)
        att[i, :n] = 1
        labels[i, e.n_prompt : n] = ids[i, e.n_prompt : n]
    return ids.to(device), att.to(device), labels.to(device)


def answer_logits(model, ids, att, labels) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits from the batch's first answer position on (``logits_to_keep``) and the tokens they predict
    (-100 where not an answer token)."""
    answer_cols = (labels != -100).any(dim=0).nonzero()
    start = max(int(answer_cols.min()) - 1, 0)
    keep = torch.arange(start, ids.shape[1] - 1, device=ids.device)
    logits = model(input_ids=ids, attention_mask=att, use_cache=False, logits_to_keep=keep).logits
    return logits.float(), labels[:, keep + 1]


def answer_loss(model, ids, att, labels) -> torch.Tensor:
    """Summed NLL of the answer tokens."""
    logits, target = answer_logits(model, ids, att, labels)
    return torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=-100, reduction="sum"
    )


@dataclass
class TrainResult:
    losses: list[float] = field(default_factory=list)  # per optimizer step
    seconds: float = 0.0
    tokens: int = 0

    @property
    def final_loss(self) -> float:
        tail = self.losses[-max(1, len(self.losses) // 10) :]
        return sum(tail) / len(tail)


def _schedule(cfg: TrainConfig):
    warm = cfg.warmup if cfg.warmup is not None else max(1, cfg.steps // 10)

    def factor(step):  # step = optimizer steps done
        if step < warm:
            return (step + 1) / (warm + 1)
        progress = (step - warm) / max(1, cfg.steps - warm)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return factor


def train(model, tokenizer, examples: Sequence[Example], params, cfg: TrainConfig, optimizer_out: list | None = None):
    """Train ``params`` (all other parameters must have ``requires_grad=False`` or be left untouched by the
    caller) on ``examples``. ``optimizer_out`` receives the optimizer, for inspection."""
    from tqdm.auto import tqdm

    params = [p for p in params]
    if not params:
        raise AchillesError("nothing to train")
    encoded = [encode(tokenizer, e, cfg.max_length) for e in examples]
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    torch.manual_seed(cfg.seed)
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _schedule(cfg))
    if optimizer_out is not None:
        optimizer_out.append(opt)
    bf16 = cfg.bf16 if cfg.bf16 is not None else device.type == "cuda"
    batches = batch_order([len(e.ids) for e in encoded], cfg)
    result = TrainResult()
    was_training = model.training
    model.train()
    t0 = time.perf_counter()
    try:
        with tqdm(total=cfg.steps, desc="finetune", disable=not cfg.progress, unit="step") as bar:
            for step in range(cfg.steps):
                micro = batches[step * cfg.grad_accum : (step + 1) * cfg.grad_accum]
                tensors = [collate([encoded[i] for i in b], pad, device) for b in micro]
                n_total = sum(int((t[2][:, 1:] != -100).sum()) for t in tensors)
                step_loss = 0.0
                for ids, att, labels in tensors:
                    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                        loss = answer_loss(model, ids, att, labels)
                    (loss / n_total).backward()
                    step_loss += float(loss.detach())
                    result.tokens += int(att.sum())
                torch.nn.utils.clip_grad_norm_(params, cfg.clip)
                opt.step()
                sched.step()
                opt.zero_grad(set_to_none=True)
                result.losses.append(step_loss / n_total)
                if not math.isfinite(result.losses[-1]):
                    raise AchillesError(f"the loss became {result.losses[-1]} at step {step + 1}; lower --lr")
                bar.set_postfix(loss=f"{result.losses[-1]:.4f}")
                bar.update(1)
    finally:
        model.train(was_training)
    result.seconds = time.perf_counter() - t0
    return result


@torch.no_grad()
def answer_nll(model, tokenizer, examples: Sequence[Example], batch_size: int = 8, max_length: int = 512):
    """Per example: (summed answer NLL, answer tokens), in the given order (evaluation; no gradients)."""
    encoded = [encode(tokenizer, e, max_length) for e in examples]
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i].ids))
    out: list[tuple[float, int]] = [(0.0, 0)] * len(encoded)
    for s in range(0, len(order), batch_size):
        idx = order[s : s + batch_size]
        ids, att, labels = collate([encoded[i] for i in idx], pad, device)
        logits, target = answer_logits(model, ids, att, labels)
        nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), target.clamp(min=0), reduction="none")
        nll = nll * (target != -100)
        for row, i in enumerate(idx):
            out[i] = (float(nll[row].sum()), int((target[row] != -100).sum()))
    return out
