"""APGD stops computing the rows a pass has misclassified (attacks/finished_rows.py): the same
rows broken as the official full loop, each kept at the iterate that first broke it, with fewer
rows computed; the whole-batch stop; stochastic victims keep the full loop."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from snnrobust.attacks import autoattack
from snnrobust.attacks.registry import get_attack
from snnrobust.evaluation import ThreatModel, Victim
from snnrobust.keyed_random import SampleDraws

from toy_models import NoisyLinear, data as toy_data

K, SHAPE = 5, (1, 6, 6)
pytestmark = pytest.mark.usefixtures("one_thread")


def blobs(n, seed, spread=0.15):
    protos = 0.2 + 0.6 * torch.rand(K, *SHAPE, generator=torch.Generator().manual_seed(123))
    y = torch.arange(n) % K
    x = protos[y] + spread * torch.randn(n, *SHAPE, generator=torch.Generator().manual_seed(seed))
    return x.clamp(0, 1), y


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(SHAPE), 32), nn.ReLU(), nn.Linear(32, K))
    x, y = blobs(500, 1)
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    for _ in range(150):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval()


class Recorder(nn.Module):
    """The module as the official loop sees it, recording every pass's input and prediction."""

    def __init__(self, module):
        super().__init__()
        self.module, self.inputs, self.preds = module, [], []

    def forward(self, x):
        out = self.module(x)
        self.inputs.append(x.detach().clone())
        self.preds.append(out.detach().max(1)[1])
        return out


def official_and_ours(model, x, y, eps, attack, n_iter, target=None):
    """(rows the official full loop breaks, the iterate that first broke each, our candidates,
    our run's counts) for one inner run from the same per-sample start."""
    v = Victim(model, ThreatModel("linf", eps))
    a = get_attack(attack, n_iter=n_iter)
    draws = SampleDraws(0, torch.arange(len(y)), stream=(None, 0))
    with v.attack_mode():
        atk, _ = a.build(v.module(), v, eps, "Linf", x.device, K, tuple(x.shape[1:]))
        a.prepare(atk, x)
        if target is not None:
            atk.y_target = v.logits(x).sort(dim=1)[1][:, -target]
        rec = Recorder(atk.model)
        atk.model = rec
        x_best, _, _, x_best_adv = atk.attack_single_run(x, y, x_init=autoattack.apgd_start(x, draws, "Linf", eps))
        atk.model = rec.module
        preds = torch.stack(rec.preds)                      # [passes, n]
        wrong = preds != y
        broken = wrong.any(0)
        first = wrong.float().argmax(0)
        first_x = torch.stack([rec.inputs[int(first[i])][i] for i in range(len(y))])
        assert torch.equal(broken, (v.predict(x_best_adv) != y) | (v.predict(x_best) != y))
        ours = autoattack.apgd_single_run(atk, v, x, y, draws)
    return broken, first_x, ours, atk.finished_rows, v


@pytest.mark.parametrize("attack,target", [("apgd-ce", None), ("apgd-t", 2)])
def test_finished_rows_break_the_same_rows_at_their_first_breaking_iterate(trained, attack, target):
    x, y = blobs(60, 2)
    broken, first_x, ours, counts, v = official_and_ours(trained, x, y, 0.08, attack, 20, target)
    assert 0 < int(broken.sum()) < len(y)                     # some rows survive the whole loop
    ours_broken = torch.zeros_like(broken)
    for c in ours:
        ours_broken |= v.predict(c) != y
    assert torch.equal(ours_broken, broken)
    # a broken row is kept at the iterate that first broke it (its first candidate)
    assert torch.equal(ours[0][broken], first_x[broken])
    calls, computed, full = counts
    assert full == 21 * len(y) and calls == 21 and computed < full


def test_every_row_broken_stops_the_run(trained):
    torch.manual_seed(5)
    untrained = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(SHAPE), K)).eval()
    x, y = blobs(30, 3, spread=0.5)
    v = Victim(untrained, ThreatModel("linf", 0.5))
    keep = v.predict(x) == y                                   # attack the clean-correct rows only
    broken, first_x, ours, counts, v = official_and_ours(untrained, x[keep], y[keep], 0.5, "apgd-ce", 50)
    assert broken.all()
    assert len(ours) == 1 and torch.equal(ours[0], first_x)    # the run stopped: its breaking iterates
    calls, computed, full = counts
    assert calls < 51 and computed < full


def test_the_attack_reports_rows_computed_and_stochastic_victims_run_the_full_loop(trained):
    x, y = blobs(40, 4)
    v = Victim(trained, ThreatModel("linf", 0.08))
    res = get_attack("apgd-ce", n_iter=10).run(v, x, y)
    fr = res.meta["finished_rows"]
    assert 0 < fr["rows_computed"] < fr["rows_full_loop"]
    assert torch.equal(res.success, v.predict(res.z_adv) != y)

    xs, ys = toy_data(12)
    noisy = Victim(NoisyLinear(sigma=0.3), ThreatModel("linf", 0.05), eot=2, vote=3)
    res = get_attack("apgd-ce", n_iter=4).run(noisy, xs, ys)
    assert "finished_rows" not in res.meta
