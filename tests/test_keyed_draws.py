"""Every random choice of an attack is keyed per sample: a sample's outcome is the same alone, in
a batch, or in another batch order — on a stochastic (Poisson-coded) victim, whose EOT and vote
passes draw per sample, and for every attack with random draws (random starts, restarts,
Square's windows, FAB's restarts)."""

from __future__ import annotations

import pytest
import torch

from conftest import make_tiny_sew
from snnrobust.attacks import get_attack
from snnrobust.evaluation import ThreatModel, Victim, evaluate
from snnrobust.evaluation.suites import get_budget
from snnrobust.keyed_random import PassDraws
from snnrobust.spiking.encoders import PoissonEncoder
from snnrobust.spiking.functional import keyed_draws

pytestmark = pytest.mark.usefixtures("one_thread")

N = 10


def _poisson_model_and_data():
    model = make_tiny_sew(5, encoder="poisson", T=4).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.mul_(6.0)  # untrained weights scaled up: neurons fire, decisions vary between images
    g = torch.Generator().manual_seed(3)
    x = torch.rand(N, 1, 12, 12, generator=g)
    with torch.no_grad():  # the label each image's mean prediction gives: most votes agree with it
        y = sum(torch.softmax(model(x), 1) for _ in range(16)).argmax(1)
    return model, x, y


ATTACKS = [
    ("pgd", {"steps": 3, "restarts": 2}),
    ("noise", {"draws": 3}),
    ("apgd-ce", {"n_iter": 3}),
    ("apgd-t", {"n_iter": 3, "n_target_classes": 2}),
    ("fab-t", {"n_iter": 3, "n_restarts": 2, "n_target_classes": 2}),
    ("square", {"n_queries": 15}),
    ("square", {"n_queries": 15, "n_restarts": 2}),
]


CASES = [(name, opts, norm, eps) for name, opts in ATTACKS for norm, eps in (("linf", 0.15), ("l2", 1.5))
         if not (name == "apgd-t" and norm == "l2")]  # one norm is enough for the targeted variant


@pytest.mark.parametrize("name,opts,norm,eps", CASES, ids=[f"{a}-{i}-{n}" for i, (a, _, n, _) in enumerate(CASES)])
def test_a_stochastic_victims_outcome_is_the_same_alone_and_in_any_batch(name, opts, norm, eps):
    model, x, y = _poisson_model_and_data()
    victim = Victim(model, ThreatModel(norm, eps), eot=2, vote=3)
    z0 = victim.start(x)
    attack = get_attack(name, seed=7, **opts)
    whole = attack.run(victim, z0, y, keys=torch.arange(N))
    assert whole.meta["unkeyed_passes"] == 0
    alone = torch.cat([attack.run(victim, z0[i:i + 1], y[i:i + 1], keys=torch.tensor([i])).success
                       for i in range(N)])
    # another batching: reversed order, uneven batches
    order = torch.arange(N).flip(0)
    mixed = torch.zeros(N, dtype=torch.bool)
    for part in (order[:3], order[3:]):
        r = attack.run(victim, z0[part], y[part], keys=part)
        assert r.meta["unkeyed_passes"] == 0
        mixed[part] = r.success
    assert 0 < int(whole.success.sum()) < N or name == "noise", (name, whole.success)
    assert whole.success.tolist() == alone.tolist() == mixed.tolist(), name


def test_pass_draws_depend_on_the_sample_and_its_pass_number_only():
    enc = PoissonEncoder(T=3)
    x = torch.full((4, 1, 5, 5), 0.5)
    draws = PassDraws(seed=11)
    enc.pass_draws = draws
    with draws.rows([7, 3, 9, 1]):
        first = enc(x)
        second = enc(x)
    draws2 = PassDraws(seed=11)
    enc.pass_draws = draws2
    with draws2.rows([3]):
        alone_first = enc(x[:1])
        alone_second = enc(x[:1])
    assert torch.equal(first[:, 1], alone_first[:, 0]) and torch.equal(second[:, 1], alone_second[:, 0])
    assert not torch.equal(first[:, 1], second[:, 1])        # a sample's passes differ from each other
    assert not torch.equal(first[:, 0], first[:, 1])         # and from another sample's
    with draws2.rows([3, 4]):
        enc(x)                                               # 4 rows for 2 declared keys: not keyed
    assert draws2.unkeyed == 1


def test_keyed_draws_restore_the_encoder_afterwards():
    model = make_tiny_sew(0, encoder="poisson")
    with keyed_draws(model, 5) as draws:
        assert draws is not None and model.encoder.pass_draws is draws
        with keyed_draws(model, 6) as inner:
            assert model.encoder.pass_draws is inner
        assert model.encoder.pass_draws is draws
    assert model.encoder.pass_draws is None
    with keyed_draws(make_tiny_sew(0), 5) as none:    # phase coding: nothing random to key
        assert none is None


def test_a_stochastic_reliable_evaluation_is_the_same_at_batch_size_1_and_10():
    """The whole reliable suite on a Poisson-coded model: clean vote, every attack of the
    cascade, worst case and diagnostics."""
    model, x, y = _poisson_model_and_data()
    budget = get_budget("quick").override(steps=2, eot=2, square_queries=10, transfer_steps=2, diag_n=6,
                                          diag_steps=2, diag_more_steps=4)
    per = {}
    for bs in (1, N):
        r = evaluate(model, x, y, suite="reliable", budget=budget, vote=3, threat=ThreatModel("linf", 0.15),
                     eps_sweep=[], batch_size=bs, progress=False)
        d = r.to_dict()
        per[bs] = (d["worst_case"]["per_sample"], [(a.id, a.broken) for a in r.attacks],
                   [(g.name, g.status, g.numbers) for g in r.diagnostics])
    broken = sum(1 for v in per[N][0] if v not in (None, "clean"))
    assert 0 < broken < N
    assert per[1] == per[N]
