"""Evaluation engine: metrics, suites, per-sample worst case, cascade, planted example, results
files and the `snnrobust attack` CLI. Tiny hand-built models, synthetic data, tmp_path only."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
from torch import nn

from snnrobust.evaluation import engine as ev
from snnrobust.evaluation.metrics import Rate, attack_success_rate, majority_vote, wilson_interval
from snnrobust.evaluation.request import EvaluationRequest
from snnrobust.evaluation.results import read_result, result_path, write_json_atomic, write_result
from snnrobust.evaluation.suites import SUITES, Budget, SuiteContext, expand, get_budget
from snnrobust.evaluation.threat import ThreatModel
from snnrobust.errors import ConfigError
from snnrobust.spiking import IFNode, Surrogate, reset_states

# A small budget so that every suite runs in seconds on synthetic data.
TINY = Budget(name="tiny", steps=10, restarts=1, surrogate_widths=(1.0, 4.0), extra_estimators=("bptr",),
              estimator_attacks=("apgd-ce",), own_attacks=("apgd-t", "sapgd"), eot=2, target_classes=1,
              square_queries=20, transfer_steps=5, diag_n=32, diag_steps=5, diag_more_steps=10, diag_restarts=2,
              diag_noise_draws=3)


# ----------------------------------------------------------------------------- fixtures
def hadamard_rows(k: int, d: int = 16) -> torch.Tensor:
    h = torch.ones(1, 1)
    while h.shape[0] < d:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    return h[1:k + 1]  # skip the all-ones row: the templates are orthogonal and zero-mean


class Linear(nn.Module):
    """logits = W (x - 0.5), W rows = orthogonal +-1 templates: a normal small ANN whose
    worst case in an L-inf ball is known (margin / (eps * ||w_y - w_j||_1))."""

    def __init__(self, k: int = 4) -> None:
        super().__init__()
        self.fc = nn.Linear(16, k, bias=False)
        with torch.no_grad():
            self.fc.weight.copy_(hadamard_rows(k))

    def forward(self, x):
        return self.fc(x.flatten(1) - 0.5)


def linear_data(n: int = 32, k: int = 4, amp: float = 0.1, seed: int = 0):
    """Images 0.5 + amp * template_y + noise: margins ~ 16 * amp, broken when eps > ~amp."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % k
    t = hadamard_rows(k)[y]
    x = 0.5 + amp * t + 0.03 * (2 * torch.rand(n, 16, generator=g) - 1)
    return x.clamp(0, 1).view(n, 1, 4, 4), y


class _ZeroGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        return torch.zeros_like(g)


class Masked(nn.Module):
    """The linear model behind a layer whose backward is zero: exact forward, no gradient."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = Linear()

    def forward(self, x):
        return self.inner(_ZeroGrad.apply(x))


class Planted(nn.Module):
    """A spiking model with a planted adversarial example.

    One IF neuron (T = 1) reads the mean pixel u of the image; class 1's logit is its spike,
    class 0's logit is a constant 0.5 (classes 2, 3 are constant 0). Clean images are constant
    0.3, labelled 0, and the threshold is 0.3 + 0.95 eps: only points near the ball's
    all-plus corner (x0 + eps everywhere, u = 0.4) make the neuron fire and the label flip, so
    an adversarial example exists within eps by construction, and nothing random finds it.

    The training surrogate is a narrow rectangle (width 0.06): its derivative is exactly 0
    unless |u - theta| < 0.03, i.e. u > 0.365, which no random start in the ball reaches
    (the start's mean pixel moves by ~0.015). So any attack that differentiates with the
    model's own surrogate sees a zero gradient and never moves: single-surrogate PGD/APGD miss
    the example. The reliable suite also tries a 4x wider surrogate (width 0.24, nonzero for
    u > 0.275): its gradient points every pixel up, the sign step lands on the corner, and the
    example is found — which is the point of sweeping surrogate widths.
    """

    EPS = 0.1

    def __init__(self) -> None:
        super().__init__()
        self.neuron = IFNode(threshold=0.3 + 0.95 * self.EPS, surrogate="rectangle:0.06")

    def forward(self, x):
        reset_states(self)
        u = x.mean(dim=(1, 2, 3))
        s = self.neuron(u.view(1, -1))[0]  # [T=1, B] -> [B]
        zeros = torch.zeros_like(s)
        return torch.stack([zeros + 0.5, s, zeros, zeros], dim=1)


# ----------------------------------------------------------------------------- metrics
def test_wilson_interval_hand_computed():
    # z = 1.96: k=0,n=10 -> (0, z^2/(n+z^2)) = (0, 3.8415/13.8415)
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.27753, abs=1e-4)
    # k=5,n=10: centre 0.5, half-width 1.96*sqrt(2.5+0.9604)/13.8415 = 0.26341
    lo, hi = wilson_interval(5, 10)
    assert lo == pytest.approx(0.23659, abs=1e-4) and hi == pytest.approx(0.76341, abs=1e-4)
    # k=8,n=10: centre (8+1.9207)/13.8415 = 0.71674, half 1.96*sqrt(1.6+0.9604)/13.8415 = 0.22657
    lo, hi = wilson_interval(8, 10)
    assert lo == pytest.approx(0.49017, abs=1e-4) and hi == pytest.approx(0.94331, abs=1e-4)
    assert wilson_interval(10, 10)[1] == 1.0 and wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


def test_rates_and_vote():
    r = Rate(5, 10)
    assert r.value == 0.5 and r.to_dict()["ci"] == pytest.approx([0.23659, 0.76341], abs=1e-4)
    assert Rate.from_dict(r.to_dict()) == r and Rate(0, 0).to_dict()["value"] is None
    correct = torch.tensor([1, 1, 1, 0], dtype=torch.bool)
    robust = torch.tensor([1, 0, 0, 0], dtype=torch.bool)
    asr = attack_success_rate(correct, robust)  # over initially correct samples only
    assert (asr.k, asr.n) == (2, 3)
    votes = torch.tensor([[1, 2, 0], [1, 0, 0], [2, 2, 1]])
    assert majority_vote(votes, 3).tolist() == [1, 2, 0]  # ties -> smallest label


# ----------------------------------------------------------------------------- suites as data
def _ctx(**kw) -> SuiteContext:
    base = dict(budget=TINY, threat=ThreatModel(eps=8 / 255), own_surrogate="atan:2", has_spiking=True,
                stochastic=False, num_classes=10)
    base.update(kw)
    return SuiteContext(**base)


def test_seed_suites_are_the_papers_settings():
    luu = expand("seed-luu2025", _ctx())
    assert [s.attack for s in luu] == ["fgsm", "pgd"] and SUITES["seed-luu2025"].eps == pytest.approx(6 / 255)
    assert luu[1].options == {"steps": 7, "step_size": 0.01, "random_start": True, "restarts": 1, "loss": "ce"}
    assert luu[1].estimator == "bptt:atan:2"
    rep = expand("seed-luu2025", _ctx(replicate_seed_code=True))
    assert rep[1].options["abort_grad_norm"] == 1e-6
    sh = expand("seed-sharmin2020", _ctx(stochastic=True))
    assert sh[1].options["step_size"] == pytest.approx(2 / 255) and sh[1].options["steps"] == 7
    assert all(s.eot == 1 for s in sh)  # one Poisson sample per step, even for a stochastic model
    assert [round(e * 255) for e in SUITES["seed-sharmin2020"].eps_sweep] == [2, 4, 6, 8, 16]
    with pytest.raises(ConfigError, match="fixes its settings"):
        expand("seed-luu2025", _ctx(estimators=["hart"]))
    with pytest.raises(ConfigError, match="seed-luu2025 only"):
        expand("reliable", _ctx(replicate_seed_code=True))


def test_reliable_and_standard_expand_by_budget():
    specs = expand("reliable", _ctx())
    ids = [s.id for s in specs]
    assert ids[:3] == ["apgd-ce/bptt:atan:2", "apgd-ce/bptt:atan:0.5", "apgd-ce/bptr"]
    assert "apgd-t/bptt:atan:2" in ids and "sapgd/bptt:atan:2" in ids and ids[-1] == "square"
    assert len(set(ids)) == len(ids)
    thorough = expand("reliable", _ctx(budget=get_budget("thorough")))
    assert all(s.options.get("n_iter", s.options.get("steps", 100)) >= 100 for s in thorough if s.kind == "gradient")
    assert len({s.estimator for s in thorough if s.estimator}) >= 10
    rand = expand("standard", _ctx(stochastic=True))
    assert [s.attack for s in rand] == ["apgd-ce", "apgd-dlr"] and rand[0].eot == TINY.eot
    std = [s.attack for s in expand("standard", _ctx())]
    assert std == ["apgd-ce", "apgd-t", "fab-t", "square"]
    assert Surrogate.parse("triangle:1:0.3").widened(2).spec() == "triangle:2:0.3"
    assert Surrogate.parse("atan:2").widened(4).spec() == "atan:0.5"
    b = get_budget("quick").override(steps=100, eot=5)
    assert b.steps == 100 and dict(b.overrides) == {"steps": 100, "eot": 5} and not b.below_standard
    assert get_budget("quick").below_standard


# ----------------------------------------------------------------------------- worst case and cascade
def test_worst_case_is_at_most_every_component():
    torch.manual_seed(0)
    model = Linear().eval()
    x, y = linear_data(32)
    threat = ThreatModel(eps=0.1)
    rel = ev.evaluate(model, x, y, suite="reliable", threat=threat, budget=TINY, progress=False, diagnostics=False)
    assert rel.clean.k == 32
    wc = rel.worst_case.robust_accuracy
    assert 0 < wc.k < 32  # the eps is chosen so that some, not all, samples break
    for rec in rel.attacks:
        assert wc.k <= rec.robust_accuracy.k  # cumulative records never go below the worst case
    # each component alone, on every sample
    for attack, opts in [("apgd-ce", {"n_iter": 10}), ("sapgd", {"steps": 10}), ("square", {"n_queries": 20}),
                         ("pgd", {"steps": 10})]:
        alone = ev.evaluate(model, x, y, attack=attack, attack_options=opts, threat=threat, progress=False)
        assert alone.attacks[0].scope == "standalone"
        assert wc.k <= alone.worst_case.robust_accuracy.k, attack
    # per-sample bookkeeping: robust samples have no breaker, broken ones name the first attack
    per = rel.worst_case.per_sample
    assert sum(v is None for v in per) == wc.k
    assert sum(rel.worst_case.broken_by.values()) == 32 - wc.k
    assert all(v is None or v in rel.worst_case.broken_by for v in per)


def test_broken_samples_are_not_attacked_again(monkeypatch):
    calls: list[tuple[str, int]] = []
    real = ev.get_attack

    def counting(name, **opts):
        atk = real(name, **opts)
        run = atk.run

        def counted(victim, z0, y, keys=None):
            calls.append((name, int(y.shape[0])))
            return run(victim, z0, y, keys=keys)

        atk.run = counted
        return atk

    monkeypatch.setattr(ev, "get_attack", counting)
    model = Linear().eval()
    x, y = linear_data(40)
    y[:4] = (y[:4] + 1) % 4  # four clean mistakes: never attacked
    res = ev.evaluate(model, x, y, suite="reliable", threat=ThreatModel(eps=0.1), budget=TINY, progress=False,
                      diagnostics=False, batch_size=16)
    assert res.clean.k == 36
    attacked = [r.n_attacked for r in res.attacks]
    assert attacked[0] == 36
    for prev, rec in zip(res.attacks, res.attacks[1:]):
        assert rec.n_attacked == prev.robust_accuracy.k  # only what is still robust
    assert attacked[1] < attacked[0]
    # the attack objects really saw exactly those samples, in batches of <= 16
    assert sum(b for _, b in calls) == sum(attacked) and all(b <= 16 for _, b in calls)


def test_planted_example_found_by_reliable_suite_only():
    model = Planted().eval()
    x = torch.full((6, 1, 8, 8), 0.3)
    y = torch.zeros(6, dtype=torch.long)
    threat = ThreatModel(eps=Planted.EPS)
    # sanity: the example exists (x0 + eps fools the model), the clean point is correct
    assert model(x + Planted.EPS).argmax(1).eq(1).all() and model(x).argmax(1).eq(0).all()
    for attack, opts in [("pgd", {"steps": 20}), ("apgd-ce", {"n_iter": 20})]:
        single = ev.evaluate(model, x, y, attack=attack, attack_options=opts, threat=threat, progress=False)
        assert single.worst_case.robust_accuracy.k == 6, f"{attack} with the training surrogate should miss it"
    rel = ev.evaluate(model, x, y, suite="reliable", threat=threat, budget=TINY, progress=False, diagnostics=False)
    assert rel.worst_case.robust_accuracy.k == 0
    assert rel.worst_case.broken_by["apgd-ce/bptt:rectangle:0.24"] == 6  # the wider surrogate found it


def test_eps_sweep_and_curve():
    model = Linear().eval()
    x, y = linear_data(24)
    res = ev.evaluate(model, x, y, attack="pgd", attack_options={"steps": 10}, threat=ThreatModel(eps=0.1),
                      eps_sweep=["0", "1/255", 0.1, 0.3], progress=False)
    accs = [p.robust_accuracy.value for p in res.eps_curve]
    assert [p.eps for p in res.eps_curve] == pytest.approx([0.0, 1 / 255, 0.1, 0.3])
    assert accs[0] == 1.0 and accs[-1] == 0.0 and accs == sorted(accs, reverse=True)
    assert res.eps_curve[2].robust_accuracy == res.worst_case.robust_accuracy  # the main eps is reused


def test_eps_curve_points_use_the_budgets_curve_settings(monkeypatch):
    """The main eps gets the full budget; the other curve points get ``curve_steps`` and
    ``curve_square_queries``, and the notes and shortfalls say so."""
    seen: list[tuple[str, float, int]] = []
    real = ev.get_attack

    def spying(name, **opts):
        atk = real(name, **opts)
        run = atk.run

        def spied(victim, z0, y, keys=None):
            budget = opts.get("n_queries") or opts.get("n_iter") or opts.get("steps") or 0
            seen.append((name, round(float(victim.threat.eps), 4), int(budget)))
            return run(victim, z0, y, keys=keys)

        atk.run = spied
        return atk

    monkeypatch.setattr(ev, "get_attack", spying)
    budget = dataclasses.replace(TINY, curve_steps=3, curve_square_queries=7)
    model = Linear().eval()
    x, y = linear_data(24, amp=0.3)  # margins large enough that samples survive and reach Square
    res = ev.evaluate(model, x, y, suite="reliable", threat=ThreatModel(eps=0.05), budget=budget, progress=False,
                      diagnostics=False, eps_sweep=[0.02, 0.05])
    assert {(e, q) for a, e, q in seen if a == "square"} == {(0.05, 20), (0.02, 7)}
    assert {(e, q) for a, e, q in seen if a == "apgd-ce"} == {(0.05, 10), (0.02, 3)}
    assert any("points other than the main eps ran with 3 steps per attack and 7 Square queries" in n
               for n in res.notes)
    short = budget.shortfalls(False)
    assert any("7 Square queries at the eps-curve points" in s_ for s_ in short)
    assert any("3 steps per attack at the eps-curve points" in s_ for s_ in short)
    assert TINY.for_curve() is TINY and not any("eps-curve" in s_ for s_ in TINY.shortfalls(False))
    wide = dataclasses.replace(TINY, curve_steps=50)
    assert wide.for_curve() is wide and wide.for_curve().steps == 10  # never more than the main budget
    assert budget.to_dict()["curve_square_queries"] == 7 and budget.to_dict()["curve_steps"] == 3
    with pytest.raises(ConfigError, match="curve_steps must be a positive integer"):
        dataclasses.replace(TINY, curve_steps=0)


def test_bad_inputs_are_one_line_config_errors():
    model = Linear().eval()
    x, y = linear_data(8)
    with pytest.raises(ConfigError, match="exactly one"):
        ev.evaluate(model, x, y, progress=False)
    with pytest.raises(ConfigError, match="unknown suite"):
        ev.evaluate(model, x, y, suite="nope", progress=False)
    with pytest.raises(ConfigError, match="unknown attack"):
        ev.evaluate(model, x, y, attack="nope", progress=False)
    with pytest.raises(ConfigError, match="unknown budget"):
        ev.evaluate(model, x, y, suite="reliable", budget="huge", progress=False)
    with pytest.raises(ConfigError, match="one label per image"):
        ev.evaluate(model, x, y[:3], attack="fgsm", progress=False)
    with pytest.raises(ConfigError, match="transfer needs source"):
        ev.evaluate(model, x, y, attack="transfer", progress=False)


# ----------------------------------------------------------------------------- results files
def test_result_json_round_trip_and_table(tmp_path):
    model = Linear().eval()
    x, y = linear_data(16)
    res = ev.evaluate(model, x, y, suite="seed-luu2025", progress=False, data_info={"dataset": "synthetic"})
    d = res.to_dict()
    assert d["schema"] == "snnrobust.evaluation/1" and d["threat_model"]["eps"] == pytest.approx(6 / 255)
    assert d["suite"] == "seed-luu2025" and d["budget"] == "quick" and d["vote"] == 1
    for a in d["attacks"]:
        assert {"id", "attack", "estimator", "eot", "steps", "restarts", "robust_accuracy",
                "attack_success_rate", "loss_trace_mean"} <= set(a)
    path = result_path(tmp_path / "model.pt", res.name, res.budget.name)
    assert path.name == "model.attack-seed-luu2025-quick.json"
    write_result(res, path)
    back = read_result(path)
    assert json.loads(json.dumps(back.to_dict())) == json.loads(path.read_text())
    table = res.table()
    assert table.splitlines()[0].startswith("Threat model: Linf eps=6/255")
    assert "pgd/bptt" in table and "[" in table and "n=16" in table
    assert "settings fixed by the paper's protocol" in table and "budget quick" not in table


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    path = tmp_path / "r.json"
    write_json_atomic({"old": 1}, path)
    with pytest.raises(ValueError):
        write_json_atomic({"new": [1.0, math.nan]}, path)  # fails half-way through serializing
    assert json.loads(path.read_text()) == {"old": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]  # no temporary file left behind
    with pytest.raises(ConfigError, match="malformed|not a snnrobust"):
        read_result(path)


# ----------------------------------------------------------------------------- CLI
def test_cli_bad_suite_is_one_line_error(tmp_path, capsys):
    from snnrobust.cli.main import main

    rc = main(["attack", str(tmp_path / "missing.pt"), "--suite", "nope"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("error: unknown suite 'nope'") and len(err.splitlines()) == 1
    rc = main(["attack", str(tmp_path / "missing.pt"), "--attack", "pgd"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "does not exist" in err and len(err.splitlines()) == 1


def test_cli_end_to_end_writes_json_next_to_checkpoint(tmp_path, capsys, tiny_checkpoint):
    from snnrobust.cli.main import main

    rc = main(["attack", str(tiny_checkpoint), "--attack", "fgsm", "--n", "8", "--no-progress", "--eps", "2/255"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert out.splitlines()[0] == "Threat model: Linf eps=2/255 (0.0078) on pixels"
    written = tmp_path / "tiny.attack-fgsm-quick.json"
    d = json.loads(written.read_text())
    assert d["data"]["dataset"] == "mnist5k" and d["data"]["n"] == 8 and len(d["data"]["indices_sha256"]) == 64
    assert d["model"]["sha256"] and d["clean"]["n"] == 8


def test_cli_start_attacks_a_later_slice_into_its_own_file(tmp_path, capsys, tiny_checkpoint):
    """--start S --n N attacks test images S..S+N-1: the same per-sample outcomes as the Python API
    on those images, recorded as such, in a file that does not replace the first slice's."""
    import numpy as np

    from snnrobust.cli.main import main
    from snnrobust.data import get_dataset
    from snnrobust.data.splits import indices_sha256
    from snnrobust.training import load_checkpoint

    args = ["--attack", "fgsm", "--n", "8", "--no-progress", "--eps", "8/255"]
    assert main(["attack", str(tiny_checkpoint), *args]) == 0
    assert main(["attack", str(tiny_checkpoint), "--start", "8", *args]) == 0
    assert "n=8 (images 8 to 15 of the test split)" in capsys.readouterr().out
    first = json.loads((tmp_path / "tiny.attack-fgsm-quick.json").read_text())
    later = json.loads((tmp_path / "tiny.attack-fgsm-from8-quick.json").read_text())
    assert first["data"]["start"] == 0 and later["data"]["start"] == 8
    assert later["data"]["indices"] == "images 8 to 15 of the test split"
    assert later["data"]["indices_sha256"] == indices_sha256(np.arange(8, 16)) != first["data"]["indices_sha256"]
    model, _ = load_checkpoint(tiny_checkpoint)
    x, y = get_dataset("mnist5k").test.batch(torch.arange(8, 16))
    api = ev.evaluate(model, x, y, attack="fgsm", threat=ThreatModel(eps=8 / 255), progress=False)
    assert later["worst_case"]["per_sample"] == api.worst_case.per_sample
    assert later["clean"]["k"] == api.clean.k


def test_cli_start_outside_the_test_split_is_one_line(tiny_checkpoint, capsys):
    from snnrobust.cli.main import main

    outside = "--start 1000 is outside the test split's 1000 images"
    for start, words in (("-1", "--start must be >= 0"), ("1000", outside)):
        rc = main(["attack", str(tiny_checkpoint), "--attack", "fgsm", "--start", start, "--no-progress"])
        err = capsys.readouterr().err.strip()
        assert rc == 2 and words in err and len(err.splitlines()) == 1, err


def test_records_list_broken_samples_and_count_compute():
    """Each record names the samples it broke and counts its compute in images: PGD without
    restarts takes one input gradient per step per sample (EOT passes each on stochastic
    models), and scoring passes are forward-only."""
    model = Linear().eval()
    x, y = linear_data(24)
    res = ev.evaluate(model, x, y, attack="pgd", attack_options={"steps": 5, "random_start": False},
                      threat=ThreatModel(eps=0.1), progress=False)
    rec = res.attacks[0]
    per = res.worst_case.per_sample
    assert sorted(rec.broken) == [i for i, v in enumerate(per) if v == rec.id]
    assert 0 < len(rec.broken) < rec.n_attacked
    # 5 steps, each from a gradient; the last iterate's loss comes from a forward pass without one
    assert rec.gradient_images == 5 * rec.n_attacked
    assert rec.forward_images >= rec.n_attacked  # at least the final scoring pass
    again = type(res).from_dict(json.loads(json.dumps(res.to_dict())))
    assert again.attacks[0].broken == rec.broken and again.attacks[0].gradient_images == rec.gradient_images
    # non-cascade (exhaustive-style) budgets: every attack runs on every correct sample, and the
    # worst case is exactly the union of what the records broke
    rel = ev.evaluate(model, x, y, suite="reliable", threat=ThreatModel(eps=0.1),
                      budget=dataclasses.replace(TINY, cascade=False),
                      progress=False, diagnostics=False)
    assert all(r.n_attacked == rel.clean.k for r in rel.attacks)
    union = set().union(*(set(r.broken) for r in rel.attacks))
    assert union == {i for i, v in enumerate(rel.worst_case.per_sample) if v not in (None, "clean")}
    assert all(r.gradient_images > 0 for r in rel.attacks if r.kind == "gradient")


# ----------------------------------------------------------------------------- the request
BAD_REQUESTS = [  # (keywords, the start of the one-line error), each found without a model or data
    (dict(), "give exactly one of a suite"),
    (dict(suite="reliable", attack="pgd"), "give exactly one of a suite"),
    (dict(suite="nope"), "unknown suite 'nope'"),
    (dict(attack="nope"), "unknown attack 'nope'"),
    (dict(suite="reliable", budget="huge"), "unknown budget 'huge'"),
    (dict(attack="fgsm", batch_size=0), "batch size must be a positive integer, got 0"),
    (dict(attack="fgsm", batch_size=True), "batch size must be a positive integer, got True"),
    (dict(suite="seed-luu2025", steps=3, restarts=2), "suite seed-luu2025 reproduces a paper's protocol and fixes "
                                                      "its settings; drop --steps, --restarts or use --attack pgd"),
    (dict(suite="seed-sharmin2020", estimators=["ste"]), "suite seed-sharmin2020 reproduces a paper's protocol and "
                                                         "fixes its settings; drop --estimator"),
    (dict(suite="seed-luu2025", eot=2), "suite seed-luu2025 reproduces a paper's protocol and fixes its settings; "
                                        "drop --eot"),
    (dict(suite="seed-luu2025", budget=get_budget("quick").override(diag_n=8)),
     "suite seed-luu2025 reproduces a paper's protocol and fixes its settings; drop the budget's overrides (diag_n=8)"),
    (dict(suite="reliable", replicate_seed_code=True), "--replicate-seed-code applies to suite seed-luu2025 only"),
    (dict(attack="pgd", replicate_seed_code=True), "--replicate-seed-code applies to suite seed-luu2025 only"),
    (dict(attack="pgd", estimators=["nope"]), "unknown gradient estimator 'nope'"),
    (dict(suite="reliable", steps=0), "--steps must be a positive integer, got 0"),
    (dict(attack="pgd", eot=-1), "--eot must be a positive integer, got -1"),
    (dict(attack="pgd", vote=0), "vote must be a positive integer"),
    (dict(attack="pgd", steps=True), "attack pgd: option 'steps' must be an integer >= 1, got True"),
    (dict(attack="fgsm", steps=5), "attack fgsm has no steps/restarts option to set"),
    (dict(attack="transfer"), "attack transfer needs source models"),
    (dict(attack="noise", estimators=["ste"]), "attack noise uses no gradients, so --estimator does not apply"),
    (dict(attack="pgd", attack_options={"nope": 1}), "attack pgd has no option 'nope'"),
    (dict(attack="pgd", threat={"norm": "l7", "eps": 0.1}), "threat model norm must be one of linf, l2"),
    (dict(attack="pgd", threat={"eps": -1}), "eps must be finite and >= 0"),
    (dict(attack="pgd", eps_sweep=["abc"]), "eps 'abc' is not a number"),
    (dict(attack="pgd", transfer_sources=[3]), "transfer source source0 is a int, not a torch nn.Module"),
]


@pytest.mark.parametrize("kw,message", BAD_REQUESTS, ids=[str(i) for i in range(len(BAD_REQUESTS))])
def test_every_bad_request_is_its_one_line_error_without_a_model(kw, message):
    with pytest.raises(ConfigError) as err:
        EvaluationRequest(**kw)
    text = str(err.value)
    assert text.startswith(message) and "\n" not in text
    # evaluate() gives the same error (before its clean pass: the model is never called)
    with pytest.raises(ConfigError) as again:
        ev.evaluate(_NeverCalled(), *linear_data(4), progress=False, **kw)
    assert str(again.value) == text


class _NeverCalled(nn.Module):
    def forward(self, x):
        raise AssertionError("a bad request must be refused before the model runs")


def test_the_request_decides_the_suite_defaults():
    plan = EvaluationRequest(suite="seed-luu2025").plan
    assert plan.threat.eps == pytest.approx(6 / 255) and plan.eps_curve == () and not plan.diagnostics
    assert not plan.cascade and plan.replication == () and plan.budget_notes == ()
    # a threat model without eps (the CLI without --eps) also takes the protocol's eps; a given eps wins
    assert EvaluationRequest(suite="seed-luu2025", threat={"norm": "linf"}).plan.threat.eps == pytest.approx(6 / 255)
    assert EvaluationRequest(suite="seed-luu2025", threat={"eps": 0.1}).plan.threat.eps == 0.1
    assert EvaluationRequest(attack="pgd", threat={"norm": "l2"}).plan.threat == ThreatModel(norm="l2")
    sh = EvaluationRequest(suite="seed-sharmin2020").plan
    assert sh.threat.eps == pytest.approx(8 / 255)
    assert [round(e * 255) for e in sh.eps_curve] == [2, 4, 6, 8, 16]
    assert EvaluationRequest(suite="seed-sharmin2020", eps_sweep=[]).plan.eps_curve == ()
    assert EvaluationRequest(attack="pgd", eps_sweep=[0.3, "8/255", 0.3]).plan.eps_curve == (8 / 255, 0.3)
    rel = EvaluationRequest(suite="reliable").plan
    assert rel.threat == ThreatModel() and rel.diagnostics and rel.cascade and rel.budget.name == "quick"
    assert rel.budget_notes and rel.budget_notes[0].startswith("budget 'quick' is below the standard")
    assert not EvaluationRequest(suite="reliable", diagnostics=False).plan.diagnostics
    assert not EvaluationRequest(suite="reliable", budget="exhaustive").plan.cascade
    assert not EvaluationRequest(suite="standard").plan.diagnostics and EvaluationRequest(suite="standard").plan.cascade
    single = EvaluationRequest(attack="pgd").plan
    assert not single.cascade and not single.diagnostics and single.budget_notes == ()
    assert EvaluationRequest(attack="pgd", diagnostics=True).plan.diagnostics
    # --steps/--restarts: a suite's budget; a single attack's own declared options (budget unchanged)
    over = EvaluationRequest(suite="reliable", steps=7, restarts=2, eot=3).plan
    assert (over.budget.steps, over.budget.restarts, over.budget.eot) == (7, 2, 3)
    assert "budget overridden: eot=3, restarts=2, steps=7" in over.budget_notes
    pgd = EvaluationRequest(attack="pgd", steps=7, restarts=2, eot=3).plan
    assert pgd.attack_options == {"steps": 7, "restarts": 2} and pgd.budget.steps == get_budget("quick").steps
    assert pgd.budget.eot == 3 and pgd.attack_kind == "gradient"
    apgd = EvaluationRequest(attack="apgd-ce", steps=7).plan
    assert apgd.attack_options == {"n_iter": 7}
    # a seed suite names only overrides; the replication switches the threat model and is labelled
    rep = EvaluationRequest(suite="seed-luu2025", replicate_seed_code=True).plan
    assert (rep.threat.perturb, rep.threat.bn_mode) == ("spikes", "train") and len(rep.replication) == 3
    # sources in every accepted form, and a transfer attack gets them as its own
    src = Linear()
    assert EvaluationRequest(attack="pgd", transfer_sources={"a": src}).plan.transfer_sources == [("a", src)]
    tr = EvaluationRequest(attack="transfer", transfer_sources=src).plan
    assert tr.transfer_sources == [("source0", src)] and tr.attack_options["sources"] == [src]
    # generators are read once and kept
    gen = EvaluationRequest(attack="pgd", estimators=(e for e in ["bptt", "ste"]), eps_sweep=iter([0.1]))
    assert gen.plan.estimators == ["bptt", "ste"] and gen.plan.eps_curve == (0.1,)


def test_evaluate_is_run_evaluation_of_its_request():
    model = Linear().eval()
    x, y = linear_data(16)
    kw = dict(suite="reliable", threat=ThreatModel(eps=0.1), budget=TINY, eps_sweep=[0.05, 0.1], seed=3,
              progress=False)

    def untimed(d):
        if isinstance(d, dict):
            return {k: untimed(v) for k, v in d.items() if not k.startswith("tim")}
        return [untimed(v) for v in d] if isinstance(d, list) else d

    a = ev.evaluate(model, x, y, **kw).to_dict()
    b = ev.run_evaluation(model, x, y, EvaluationRequest(**kw)).to_dict()
    assert untimed(a) == untimed(b) and a["diagnostics"] and len(a["eps_curve"]) == 2


def test_cli_time_segments_and_the_neuron_kernel_leave_the_outcome_and_say_so(tmp_path, capsys):
    """`attack --time-segment`, `--neuron-kernel` and `--channels-last` change how gradients are computed, not what
    the attack finds (the same samples broken here), and the result notes say which was used."""
    from conftest import save_tiny_checkpoint

    from snnrobust.cli.main import main

    ckpt = save_tiny_checkpoint(tmp_path / "t.pt", encoder="direct", T=6, threshold=0.3)
    outcomes = {}
    for name, extra in (("plain", []), ("segments", ["--time-segment", "4"]), ("kernel", ["--neuron-kernel"]),
                        ("fast", ["--neuron-kernel", "--channels-last"])):
        out = tmp_path / f"{name}.json"
        rc = main(["attack", str(ckpt), "--attack", "pgd", "--steps", "5", "--n", "64", "--no-progress", "--eps",
                   "0.27", "--out", str(out)] + extra)
        assert rc == 0, capsys.readouterr().out
        d = json.loads(out.read_text())
        outcomes[name] = (d["worst_case"]["per_sample"], " ".join(d["notes"]))
    assert outcomes["segments"][0] == outcomes["plain"][0] == outcomes["kernel"][0] == outcomes["fast"][0]
    assert "channels-last" in outcomes["fast"][1]
    per = outcomes["plain"][0]
    assert None in per and any(v not in (None, "clean") for v in per)  # some broken, some not: a real comparison
    assert "segments of 4 timesteps" in outcomes["segments"][1]
    assert "compiled CPU kernel" in outcomes["kernel"][1] and "kernel" not in outcomes["plain"][1]
    assert main(["attack", str(ckpt), "--attack", "pgd", "--time-segment", "0"]) == 2
    err = capsys.readouterr().err
    assert "--time-segment must be a positive integer" in err and len(err.strip().splitlines()) == 1
