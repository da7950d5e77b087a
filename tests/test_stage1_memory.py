"""Stage 1's memory, stated and bounded: the printed estimate against allocations counted by torch's
profiler on tiny random models, the ranking without a copy of the scores, stage 1 over groups of
modules (same ranking, bit for bit), the probe cap and the ``max_memory`` setting."""

from __future__ import annotations

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from lm_eval_achilles.cli import main
from lm_eval_achilles.errors import AchillesError
from lm_eval_achilles.locator.candidates import candidate_modules
from lm_eval_achilles.locator.config import LocatorConfig
from lm_eval_achilles.locator.locate import adaptive_locate
from lm_eval_achilles.locator.perplexity import encode
from lm_eval_achilles.locator.perturbation import Perturbation, perturbation_ranking, perturbation_scores, stage1_memory
from lm_eval_achilles.locator.ranking import rank_scores
from lm_eval_achilles.models.forward import forward
from tests.conftest import make_tiny_llama

#: The estimate must match the measured extra memory this closely (relative).
TOLERANCE = 0.05


def _tiny_qwen2():
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    cfg = Qwen2Config(
        vocab_size=128,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
    )
    return Qwen2ForCausalLM(cfg).eval()


def _allocations(fn) -> tuple[int, int]:
    """(bytes still allocated at the end, peak bytes) of the CPU allocations ``fn`` makes, from the
    allocation events torch's profiler records (the model's weights exist before and are not counted)."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        kept = fn()  # noqa: F841 - what fn returns stays alive until the count is taken
    events = sorted((e for e in prof.events() if e.self_cpu_memory_usage), key=lambda e: e.time_range.start)
    now = peak = 0
    for e in events:
        now += e.self_cpu_memory_usage
        peak = max(peak, now)
    return now, peak


@pytest.mark.parametrize(
    "build, dtype",
    [
        (lambda: make_tiny_llama(hidden=64, intermediate=128, vocab=128), torch.float32),
        (lambda: make_tiny_llama(hidden=64, intermediate=128, vocab=128), torch.bfloat16),
        (_tiny_qwen2, torch.bfloat16),
    ],
    ids=["llama-fp32", "llama-bf16", "qwen2-bf16"],
)
def test_printed_estimate_matches_the_measured_memory(build, dtype):
    model = build().to(dtype)
    ids = torch.randint(0, 128, (1, 48), generator=torch.Generator().manual_seed(0))
    modules = candidate_modules(model)
    mem = stage1_memory(model, ids, modules, batch_size=8)
    assert mem.bytes_per_entry == torch.empty(0, dtype=dtype).element_size() + 4  # clean output + float32 sum
    assert mem.entries == 48 * sum(mem.widths.values())

    def stage1():
        state = Perturbation(model, ids, modules, seed=1, batch_size=8, cap=24)
        state.add(24)
        return state

    held, peak = _allocations(stage1)
    # what the state keeps: the clean outputs, the sums and the scratch buffers (+ the clean embeddings)
    assert held == pytest.approx(mem.held() + mem.scratch(), rel=TOLERANCE)
    assert (held - mem.scratch()) / mem.entries == pytest.approx(mem.bytes_per_entry, rel=TOLERANCE)
    # the peak beyond the same model's bare forwards of one batch of noisy inputs
    x = model.get_input_embeddings()(ids).expand(8, -1, -1).contiguous().detach()

    def bare():
        with torch.no_grad():
            for _ in range(3):
                forward(model, last_logits_only=True, inputs_embeds=x)

    _, bare_peak = _allocations(bare)
    assert peak - bare_peak == pytest.approx(mem.total(), rel=TOLERANCE)

    # ranking adds no copy of the scores (the paper's default: channel granularity)
    def ranked():
        return perturbation_ranking(model, ids, modules, 64, samples=24, seed=1, batch_size=8, progress=False)

    _, rank_peak = _allocations(ranked)
    assert rank_peak - bare_peak == pytest.approx(mem.total(), rel=TOLERANCE)


@pytest.mark.parametrize("granularity", ["channel", "position"])
def test_grouped_stage1_gives_the_same_ranking_bit_for_bit(tiny_llama, granularity, capsys):
    ids = torch.randint(0, 64, (1, 20), generator=torch.Generator().manual_seed(0))
    modules = candidate_modules(tiny_llama)
    mem = stage1_memory(tiny_llama, ids, modules, batch_size=4)
    kw = dict(k=10**6, granularity=granularity, samples=10, seed=3, batch_size=4)
    whole = perturbation_ranking(tiny_llama, ids, modules, progress=False, **kw)
    budget = 2 * max(mem.total([m]) for m in mem.widths)  # room for about two modules per group
    grouped = perturbation_ranking(tiny_llama, ids, modules, max_memory=budget, progress=True, **kw)
    err = capsys.readouterr().err
    assert "stage 1 memory" in err and f"= {mem.entries} entries x 8 bytes" in err
    groups = mem.groups(budget)
    assert len(groups) > 3 and f"stage 1 in {len(groups)} groups" in err
    assert [n for g in groups for n in g] == list(mem.widths)  # every module once, in forward order
    # the same entries, scores (float, compared exactly) and order; and those of the means themselves
    assert grouped == whole
    means = perturbation_scores(tiny_llama, ids, modules, samples=10, seed=3, batch_size=4, progress=False)
    assert whole == rank_scores(means, 10**6, granularity)
    assert len(whole) == (mem.entries if granularity == "position" else sum(mem.widths.values()))


def test_max_memory_below_one_module_and_with_samples_auto(tiny_llama):
    ids = torch.randint(0, 64, (1, 20), generator=torch.Generator().manual_seed(0))
    modules = candidate_modules(tiny_llama)
    with pytest.raises(AchillesError, match="below what stage 1 needs for one module"):
        perturbation_ranking(tiny_llama, ids, modules, 10, samples=2, max_memory=100, progress=False)
    mem = stage1_memory(tiny_llama, ids, modules, batch_size=LocatorConfig().batch_size)
    cfg = LocatorConfig(samples="auto", max_memory=mem.total() - 1, progress=False)
    with pytest.raises(AchillesError, match="samples=auto .* cannot run in groups"):
        adaptive_locate(tiny_llama, ids, ids, modules, cfg)


def test_probe_is_capped_at_512_tokens_and_says_so(embedded):
    long_text = " ".join(["word"] * 700)
    with pytest.warns(UserWarning, match=r"has \d+ tokens; only the first 512 are used"):
        ids = encode(embedded.tokenizer, long_text, max_tokens=512, what="probe text")
    assert ids.shape[1] == 512


def test_max_memory_setting():
    cfg = LocatorConfig(max_memory="8GB")
    assert cfg.max_memory == 8 * 10**9
    assert "max_memory" not in cfg.to_record() and cfg == LocatorConfig()  # not a setting of the result
    assert "locate_max_memory" in LocatorConfig.model_arg_names()
    assert LocatorConfig.from_model_args({"locate_max_memory": "512MiB"}).max_memory == 512 * 2**20
    with pytest.raises(AchillesError, match="locate_max_memory must be a memory size"):
        LocatorConfig.from_model_args({"locate_max_memory": "lots"})


def test_max_memory_flag_is_checked_before_loading(tmp_path, capsys):
    assert main(["locate", "--max-memory", "0", "--out", str(tmp_path / "m.json")]) == 2
    assert "--max-memory: must be a memory size such as 8GB or 512MiB, got '0'" in capsys.readouterr().err
