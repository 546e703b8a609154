"""Suites and budgets as data, and the runs they expand to: seed 001's black-box half,
FAB-T in the reliable suite, the quick budget's notes, and the exhaustive reference budget.
Tiny hand-built models and synthetic data; every test runs in seconds."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from snnrobust.evaluation import engine as ev
from snnrobust.evaluation.results import budget_from_dict
from snnrobust.evaluation.suites import BUDGETS, SUITES, SuiteContext, expand, get_budget, reliable_estimators
from snnrobust.evaluation.threat import ThreatModel
from snnrobust.errors import ConfigError

K = 4  # classes of the toy models


def templates(k: int = K, d: int = 16, seed: int = 0) -> torch.Tensor:
    """k random +-1 templates of d pixels (fixed seed)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 2, (k, d), generator=g).float() * 2 - 1


class Template(nn.Module):
    """logits = W (x - 0.5): a small ANN whose gradients point straight at the other classes'
    templates, so a perturbation crafted on a copy with the same W transfers exactly."""

    def __init__(self, w: torch.Tensor) -> None:
        super().__init__()
        self.fc = nn.Linear(w.shape[1], w.shape[0], bias=False)
        with torch.no_grad():
            self.fc.weight.copy_(w)

    def forward(self, x):
        return self.fc(x.flatten(1) - 0.5)


def toy_data(n: int = 24, amp: float = 0.06, seed: int = 1):
    """Images 0.5 + amp * template_y + small noise, [n, 1, 4, 4], labels [n]."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % K
    x = 0.5 + amp * templates()[y] + 0.02 * (2 * torch.rand(n, 16, generator=g) - 1)
    return x.clamp(0, 1).view(n, 1, 4, 4), y


def _ctx(**kw) -> SuiteContext:
    base = dict(budget=get_budget("quick"), threat=ThreatModel(eps=8 / 255), own_surrogate="atan:2",
                has_spiking=True, stochastic=False, num_classes=10)
    base.update(kw)
    return SuiteContext(**base)


# ----------------------------------------------------------------------------- seed 001's black-box half
def test_sharmin_with_a_source_runs_black_box_fgsm_and_pgd_crafted_on_it():
    target = Template(templates()).eval()
    # an "independently trained" source: the same task learned with slightly different weights
    source = Template(templates() * 0.9 + 0.1 * templates(seed=5)).eval()
    x, y = toy_data()
    res = ev.evaluate(target, x, y, suite="seed-sharmin2020", threat=ThreatModel(eps=0.1),
                      transfer_sources=[("indep", source)], eps_sweep=[], progress=False)
    kinds = {r.id: r.kind for r in res.attacks}
    assert kinds == {"fgsm/bptt": "single-step", "pgd/bptt": "gradient",
                     "transfer-fgsm[indep]": "transfer", "transfer-pgd[indep]": "transfer"}
    by_id = {r.id: r for r in res.attacks}
    fgsm_bb, pgd_bb = by_id["transfer-fgsm[indep]"], by_id["transfer-pgd[indep]"]
    # crafted on the source with seed 001's settings, scored on the target
    assert fgsm_bb.attack["inner"]["name"] == "fgsm"
    inner = pgd_bb.attack["inner"]
    assert inner["name"] == "pgd" and inner["steps"] == 7 and inner["step_size"] == pytest.approx(2 / 255)
    assert inner["random_start"] is True and pgd_bb.attack["source_eot"] == 1
    for rec in (fgsm_bb, pgd_bb):
        assert [s["class"] for s in rec.meta["per_source"]] == ["Template"]
        assert rec.scope == "standalone" and rec.n_attacked == res.clean.k
    # the source's gradients transfer to this target, so the black-box half really breaks samples
    assert pgd_bb.n_broken > 0 and pgd_bb.meta["per_source"][0]["fooled_target"] >= pgd_bb.n_broken
    assert any("black-box half" in n and "indep" in n for n in res.notes)
    assert not any("WHITE-BOX ONLY" in n for n in res.notes)


def test_sharmin_without_a_source_says_white_box_only():
    model = Template(templates()).eval()
    x, y = toy_data(8)
    res = ev.evaluate(model, x, y, suite="seed-sharmin2020", threat=ThreatModel(eps=0.1), eps_sweep=[],
                      progress=False)
    assert [r.kind for r in res.attacks] == ["single-step", "gradient"]
    assert any(n.startswith("seed-sharmin2020 ran WHITE-BOX ONLY") for n in res.notes)
    assert "WHITE-BOX ONLY" in res.table()


def test_sources_a_suite_cannot_use_are_said_to_be_unused():
    ctx = _ctx(transfer_sources=[("other", Template(templates()))])
    specs = expand("seed-luu2025", ctx)
    assert all(s.kind != "transfer" for s in specs)
    assert any("not used" in n and "seed-luu2025" in n for n in ctx.notes)
    rel_ctx = _ctx(transfer_sources=[("other", Template(templates()))])
    transfer = [s for s in expand("reliable", rel_ctx) if s.kind == "transfer"]
    assert len(transfer) == 1 and not any("not used" in n for n in rel_ctx.notes)
    # a stochastic source is crafted on with the budget's EOT, not the Victim's default 10
    assert transfer[0].options["source_eot"] == get_budget("quick").eot == 4
    over = _ctx(transfer_sources=[("other", Template(templates()))], budget=get_budget("quick").override(eot=2))
    assert [s.options["source_eot"] for s in expand("reliable", over) if s.kind == "transfer"] == [2]


def test_cli_seed_sharmin_with_transfer_from_writes_black_box_records(tmp_path, capsys):
    import json

    from snnrobust.cli.main import main
    from snnrobust.models import create_model
    from snnrobust.training import save_checkpoint

    paths = []
    for seed, name in ((0, "target.pt"), (1, "source.pt")):
        torch.manual_seed(seed)
        m = create_model("vgg5", width=2, in_channels=1, image_size=28, T=2, encoder="poisson", num_classes=10)
        save_checkpoint(tmp_path / name, {"model_config": m.config.to_dict(), "model_state": m.state_dict(),
                                          "data": {"dataset": "mnist5k", "split_seed": 0}})
        paths.append(str(tmp_path / name))
    rc = main(["attack", paths[0], "--suite", "seed-sharmin2020", "--transfer-from", paths[1], "--n", "4",
               "--eps-sweep", "none", "--no-progress", "--vote", "1"])
    out = capsys.readouterr().out
    assert rc == 0, out
    d = json.loads((tmp_path / "target.attack-seed-sharmin2020-quick.json").read_text())
    bb = [a for a in d["attacks"] if a["kind"] == "transfer"]
    assert [a["id"] for a in bb] == ["transfer-fgsm[source]", "transfer-pgd[source]"]
    assert d["model"]["transfer_sources"] == ["source"]
    assert "transfer-pgd[source]" in out


# ----------------------------------------------------------------------------- FAB-T and the quick note
def test_fab_t_is_in_the_reliable_suite_of_every_budget():
    for name in ("quick", "thorough", "exhaustive"):
        specs = expand("reliable", _ctx(budget=get_budget(name)))
        fab = [s for s in specs if s.attack == "fab-t"]
        assert fab, name
        assert all(s.kind == "gradient" and s.options["n_target_classes"] == min(BUDGETS[name].target_classes, 9)
                   for s in fab)
    # thorough and exhaustive run it under every estimator, quick under the own surrogate only
    assert len([s for s in expand("reliable", _ctx(budget=get_budget("thorough"))) if s.attack == "fab-t"]) == 12
    assert [s.estimator for s in expand("reliable", _ctx()) if s.attack == "fab-t"] == ["bptt:atan:2"]
    # the official FAB-T code perturbs pixels only: skipped (and said) when the threat model perturbs spikes
    ctx = _ctx(threat=ThreatModel(eps=8 / 255, perturb="spikes"))
    assert not any(s.attack == "fab-t" for s in expand("reliable", ctx))
    assert any(n.startswith("fab-t skipped") for n in ctx.notes)


def test_quick_note_names_every_setting_below_the_standard():
    from snnrobust.evaluation.suites import (STANDARD_EOT, STANDARD_SQUARE_QUERIES, STANDARD_STEPS,
                                          STANDARD_TARGET_CLASSES)

    quick = get_budget("quick")
    (note,) = quick.notes()
    assert note.startswith("budget 'quick' is below the standard of reliable evaluations in: ")
    for part in (f"50 steps per attack (standard >= {STANDARD_STEPS})",
                 f"1 target class for APGD-T/FAB-T (standard {STANDARD_TARGET_CLASSES}",
                 f"100 Square queries at the eps-curve points other than the main eps "
                 f"(standard >= {STANDARD_SQUARE_QUERIES})",
                 f"10 steps per attack at the eps-curve points other than the main eps (standard >= {STANDARD_STEPS})",
                 f"4 EOT samples per gradient on stochastic models (standard >= {STANDARD_EOT})",
                 "10 PGD steps on transfer sources (standard >= 100)",
                 "apgd-t/sapgd/fab-t under the model's own surrogate only"):
        assert part in note, part
    assert "upper bound" in note
    # EOT is named only where it applies
    assert "EOT" not in quick.notes(stochastic=False)[0]
    assert "4 EOT samples per gradient (standard >= 20)" in quick.notes(stochastic=True)[0]
    # raising steps alone leaves the other shortfalls named (and the override recorded)
    raised = quick.override(steps=100)
    assert not raised.below_standard
    assert "steps per attack (standard" not in raised.notes()[0] and "100 Square queries" in raised.notes()[0]
    assert "5000 Square queries" not in note  # the main eps gets the standard count
    assert raised.notes()[1] == "budget overridden: steps=100"
    assert get_budget("thorough").notes() == [] and get_budget("exhaustive").notes() == []


def test_budget_overrides_and_round_trip():
    b = get_budget("exhaustive").override(steps=3, square_queries=40, target_classes=2)
    assert (b.steps, b.square_queries, b.target_classes, b.cascade) == (3, 40, 2, False)
    assert dict(b.overrides) == {"steps": 3, "square_queries": 40, "target_classes": 2}
    assert budget_from_dict(b.to_dict()) == b
    with pytest.raises(ConfigError, match="unknown setting"):
        b.override(surrogate_widths=2)
    with pytest.raises(ConfigError, match="square_queries must be a positive integer"):
        b.override(square_queries=0)


# ----------------------------------------------------------------------------- exhaustive
def test_exhaustive_expands_to_every_estimator_times_every_attack_without_cascade():
    b = get_budget("exhaustive")
    assert not SUITES["reliable"].cascades(b) and SUITES["reliable"].cascades(get_budget("thorough"))
    for stochastic in (False, True):
        ctx = _ctx(budget=b, stochastic=stochastic)
        specs = expand("reliable", ctx)
        ests = reliable_estimators(_ctx(budget=b))
        assert len(ests) == 12  # every surrogate width and every extra estimator of thorough
        assert set(ests) == set(reliable_estimators(_ctx(budget=get_budget("thorough"))))
        pairs = {(s.attack, s.estimator) for s in specs if s.kind == "gradient"}
        assert pairs == set(itertools.product(("apgd-ce", "apgd-t", "sapgd", "fab-t"), ests))
        for s in specs:
            if s.kind == "gradient":
                assert s.options.get("n_iter", s.options.get("steps")) >= 100
                assert s.eot == (20 if stochastic else 1) and (not stochastic or s.eot >= 20)
                if s.attack in ("apgd-ce", "sapgd"):
                    assert s.options.get("n_restarts", s.options.get("restarts")) >= 2
                else:
                    assert s.options["n_target_classes"] == 9
        (square,) = [s for s in specs if s.kind == "score"]
        assert square.attack == "square" and square.options["n_queries"] >= 5000
        assert any("no cascade" in n for n in ctx.notes)


def test_exhaustive_runs_every_spec_on_every_correct_sample():
    model = Template(templates()).eval()
    x, y = toy_data(16)
    y[:3] = (y[:3] + 1) % K  # three clean mistakes: never attacked
    budget = get_budget("exhaustive").override(steps=3, restarts=1, square_queries=10, target_classes=1)
    res = ev.evaluate(model, x, y, suite="reliable", threat=ThreatModel(eps=0.05), budget=budget,
                      diagnostics=False, progress=False, batch_size=8)
    correct = res.clean.k
    assert correct == 13 and res.protocol["cascade"] is False
    attacks = {(r.attack["name"], r.estimator_label) for r in res.attacks if r.kind == "gradient"}
    assert {a for a, _ in attacks} == {"apgd-ce", "apgd-t", "sapgd", "fab-t"} and len(attacks) == 4
    assert [r.kind for r in res.attacks].count("score") == 1
    for r in res.attacks:
        assert r.scope == "standalone" and r.n_attacked == correct, r.id
    # the per-sample worst case still combines them: robust only if no attack broke it
    wc = res.worst_case
    assert all(wc.robust_accuracy.k <= r.robust_accuracy.k for r in res.attacks)
    assert sum(v is None for v in wc.per_sample) == wc.robust_accuracy.k
    assert 0 < wc.robust_accuracy.k < correct  # eps chosen so that some, not all, break
