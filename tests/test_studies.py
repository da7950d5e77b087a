"""Studies on a tiny model: each runs end to end and writes its table, JSON and plot; the subset study's
batched evaluation equals masking subsets one at a time; pruning yields a minimal set."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import make_tiny_llama
from test_rankers import CharTokenizer

from lm_eval_achilles.locator.config import LocatorConfig
from lm_eval_achilles.locator.perplexity import delta, mean_nll
from lm_eval_achilles.mask.mask_file import Neuron
from lm_eval_achilles.mask.masking import masked
from lm_eval_achilles.models.loading import LoadedModel
from lm_eval_achilles.paper.studies import STUDIES, run_study, write_index
from lm_eval_achilles.paper.studies.common import StudyContext, texts_nll
from lm_eval_achilles.paper.studies.components import component_groups
from lm_eval_achilles.paper.studies.subsets import all_subsets, prune_minimal, redraw, subset_nlls
from lm_eval_achilles.paper.studies.threshold import prefix_sizes

TEXT = "the quick brown fox jumps over the lazy dog and runs far away"


def _ids(seed=0, t=14):
    g = torch.Generator().manual_seed(seed)
    return torch.cat([torch.ones(1, 1, dtype=torch.long), torch.randint(2, 64, (1, t - 1), generator=g)], dim=1)


def test_subsets_batched_equals_one_by_one():
    model = make_tiny_llama(seed=1)
    ids = _ids(1)
    neurons = [
        Neuron("model.layers.0.mlp.down_proj", 3),
        Neuron("model.layers.1.mlp.down_proj", 3),
        Neuron("model.layers.0.self_attn.o_proj", 7),
        Neuron("model.layers.1.mlp.up_proj", 20),
    ]
    subsets = all_subsets(len(neurons))
    assert len(subsets) == 15 and subsets[0] == (0, 1, 2, 3)
    batched = subset_nlls(model, ids, neurons, subsets, batch_size=4)
    one_by_one = []
    for s in subsets:
        with masked(model, [neurons[i] for i in s]):
            one_by_one.append(float(mean_nll(model, ids)[0]))
    torch.testing.assert_close(torch.tensor(batched), torch.tensor(one_by_one), rtol=1e-5, atol=1e-6)
    assert len(set(round(v, 6) for v in batched)) > 1  # the masks really differ between rows


def test_texts_nll_is_token_weighted():
    model = make_tiny_llama(seed=2)
    a, b = _ids(1, 6), _ids(2, 11)
    s = [Neuron("model.layers.0.mlp.down_proj", 1)]
    got = texts_nll(model, [a, b], [[], s])
    with masked(model, s):
        ma, mb = float(mean_nll(model, a)[0]), float(mean_nll(model, b)[0])
    ua, ub = float(mean_nll(model, a)[0]), float(mean_nll(model, b)[0])
    assert got[0] == pytest.approx((ua * 5 + ub * 10) / 15, rel=1e-5)
    assert got[1] == pytest.approx((ma * 5 + mb * 10) / 15, rel=1e-5)


def test_prune_minimal_gives_minimal_set():
    model = make_tiny_llama(seed=3)
    ids = _ids(3)
    start = [Neuron(f"model.layers.{layer}.mlp.down_proj", c) for layer in (0, 1) for c in range(16)]
    base = float(mean_nll(model, ids)[0])
    with masked(model, start):
        full = delta(float(mean_nll(model, ids)[0]), base)
    eps = full * 0.5
    minimal, log = prune_minimal(model, ids, start, eps)
    assert 1 <= len(minimal) < len(start) and log[-1]["size"] == len(minimal)
    with masked(model, minimal):
        assert delta(float(mean_nll(model, ids)[0]), base) >= eps
    for i in range(len(minimal)):
        with masked(model, minimal[:i] + minimal[i + 1 :]):
            assert delta(float(mean_nll(model, ids)[0]), base) < eps


def test_component_groups_and_prefix_sizes():
    model = make_tiny_llama()
    from lm_eval_achilles.locator.candidates import candidate_modules

    g = component_groups(candidate_modules(model))
    assert g["down_proj"] == ["model.layers.0.mlp.down_proj", "model.layers.1.mlp.down_proj"]
    assert len(g["attention"]) == 8 and all("norm" not in n for n in g["attention"])
    assert prefix_sizes(130, exact=100, coarse=10) == list(range(1, 101)) + [110, 120, 130]


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("studies")
    loaded = LoadedModel(make_tiny_llama(seed=0), CharTokenizer(), "tiny", "tiny llama")
    ctx = StudyContext(
        loaded=loaded,
        out=out,
        command="pytest",
        config=LocatorConfig(text=TEXT, samples=4, epsilon=0.05, max_steps=30, ranking_size=1000, progress=False),
        eval_texts=[
            "a tiny evaluation paragraph with more than fifty characters in it, twice over",
            "another evaluation text, also long enough to be kept as a sample here",
        ],
        trials=2,
        quick=True,
    )
    for name in STUDIES:
        run_study(name, ctx)
    write_index(ctx, STUDIES)
    return out


@pytest.mark.parametrize("name", STUDIES)
def test_study_writes_table_json_and_plot(study_dir, name):
    folder = study_dir / name
    md = (folder / "README.md").read_text()
    assert md.startswith(f"# Study `{name}`") and "pytest" in md and "| " in md
    data = json.loads((folder / f"{name}.json").read_text())
    assert data["study"] == name and data["rows"] and data["claim"]
    assert (folder / data["plot"]).is_file() and (folder / data["plot"]).stat().st_size > 1000
    assert (study_dir / "README.md").is_file()


def test_methods_random_rows_average_trials(study_dir):
    data = json.loads((study_dir / "methods" / "methods.json").read_text())["data"]
    trials = data["random_trials"]["1"]
    assert len(trials) == 2
    assert float(data["random_mean_sd"]["1"][0]) == pytest.approx(sum(trials) / 2)


def test_subsets_plot_redraws_from_its_json(study_dir, tmp_path):
    """The committed subsets.png files are redrawn from their JSON: the redraw reads every key it needs
    from what the study writes, and replaces the plot."""
    folder = tmp_path / "subsets"
    folder.mkdir()
    (folder / "subsets.json").write_text((study_dir / "subsets" / "subsets.json").read_text())
    out = redraw(folder / "subsets.json")
    assert out == folder / "subsets.png" and out.stat().st_size > 1000


def test_study_cli_rejects_unknown_name(capsys):
    from lm_eval_achilles.cli import main

    assert main(["study", "nope", "--out", "/tmp/x"]) == 2
    assert "unknown study" in capsys.readouterr().err
