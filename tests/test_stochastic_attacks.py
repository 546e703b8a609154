"""Attacks on stochastic (Poisson-coded) models: every sample the final vote counts robust was
attacked by every AutoAttack component, and a point that fooled the model is never thrown
away because a noisy vote at the clean point also said "misclassified"."""

import math
from collections import Counter

import pytest
import torch
from torch import nn

from snnrobust.evaluation import ThreatModel, Victim
from snnrobust.attacks.base import BestPoints
from snnrobust.attacks.registry import get_attack
from snnrobust.spiking.encoders import PoissonEncoder

K = 5               # classes
SHAPE = (1, 6, 6)   # image [C, H, W]
D = math.prod(SHAPE)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # tiny models: thread start-up dominates on the shared 2-core machine
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


class PoissonReadout(nn.Module):
    """Poisson rate code over T steps (its own seeded generator), then a linear readout of the
    mean rate: logits [B, K] from images [B, 1, 6, 6] in [0, 1].

    Instrumented: with ``clean`` [N, D] set, every forward pass maps each input row to the
    clean image it lies nearest to (L-inf) and, when the row differs from that image, records
    the sample's index in ``moved_grad`` (a pass building an input gradient: an attack's
    optimization step; ``grad_passes`` counts them per sample) or ``moved_query`` (a pass
    without one: a query or a vote)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, T: int) -> None:
        super().__init__()
        self.encoder = PoissonEncoder(T, seed=0)
        self.lin = nn.Linear(D, weight.shape[0])
        with torch.no_grad():
            self.lin.weight.copy_(weight)
            self.lin.bias.copy_(bias)
        self.clean = None
        self.moved_grad: set = set()
        self.moved_query: set = set()
        self.grad_passes: Counter = Counter()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.clean is not None:
            dist, who = (x.detach().flatten(1)[:, None] - self.clean[None]).abs().amax(-1).min(1)
            moved = who[dist > 1e-6].tolist()
            (self.moved_grad if x.requires_grad else self.moved_query).update(moved)
            if x.requires_grad:
                self.grad_passes.update(moved)
        return self.lin(self.encoder(x).mean(0).flatten(1))


def prototype_task(n: int = 60, spread: float = 0.1):
    """Images near K random prototypes, and a T=1 Poisson model scoring each class by the
    correlation of the rates with its prototype: a single pass is right on ~83 % of the
    samples, a 9-pass vote on ~93 %, so one noisy clean pass misclassifies ~8 samples that the
    vote then calls correct."""
    g = torch.Generator().manual_seed(0)
    protos = 0.1 + 0.8 * torch.rand(K, *SHAPE, generator=g)
    y = torch.arange(n) % K
    x = (protos[y] + spread * torch.randn(n, *SHAPE, generator=g)).clamp(0, 1)
    model = PoissonReadout((protos.flatten(1) - 0.5) * 3.0, torch.zeros(K), T=1)
    return model, x, y


COMPONENTS = [
    ("apgd-ce", {"n_iter": 5}),
    ("apgd-dlr", {"n_iter": 5}),
    ("apgd-t", {"n_iter": 5, "n_target_classes": 2}),
    ("fab-t", {"n_iter": 5, "n_target_classes": 2}),
    ("square-aa", {"n_queries": 20}),
    ("square", {"n_queries": 20}),           # snnrobust's: Attack.run attacks every sample in its first search
]


@pytest.mark.parametrize("name,options", COMPONENTS, ids=[c[0] for c in COMPONENTS])
def test_autoattack_component_attacks_every_sample_it_counts_robust(name, options):
    """eps is too small to break much, so nearly every sample is counted robust; before the fix
    pyautoattack skipped the samples that its one noisy clean pass misclassified, and the vote
    then counted them robust without any attack (4-9 of 60 per component here)."""
    model, x, y = prototype_task()
    victim = Victim(model, ThreatModel(eps=0.02), eot=1, vote=9)
    assert victim.stochastic
    model.clean = x.flatten(1)
    res = get_attack(name, **options).run(victim, x, y)
    model.clean = None

    robust = set((~res.success).nonzero().squeeze(1).tolist())
    assert len(robust) >= 40                           # the check below is about many samples
    # gradient attacks: an optimization step at a perturbed point; Square: a query there
    attacked = model.moved_query if name.startswith("square") else model.moved_grad
    assert robust <= attacked, f"counted robust but never attacked: {sorted(robust - attacked)}"
    assert (victim.threat.norm_of(res.z_adv - x) <= 0.02 + 1e-6).all()
    if name == "square":
        return  # the rest is the AutoAttack loop's bookkeeping
    assert res.meta["unattacked_robust"] == 0
    assert res.meta["attacked"] == len(y)              # stochastic victim: every sample handed over
    assert res.meta["skipped_clean_mistakes"] == 0
    assert (victim.threat.norm_of(res.z_adv - x) <= 0.02 + 1e-6).all()
    assert res.z_adv.min() >= 0 and res.z_adv.max() <= 1


def test_autoattack_resumes_samples_a_later_vote_calls_robust():
    """APGD-T with two target classes: a sample that a vote called broken after the first target
    left the loop; when the final vote calls it robust it is resumed, so every sample counted
    robust went through both targets (n_iter + 1 = 6 gradient passes each, eot = 1)."""
    model, x, y = prototype_task()
    victim = Victim(model, ThreatModel(eps=0.02), eot=1, vote=9)
    model.clean = x.flatten(1)
    res = get_attack("apgd-t", n_iter=5, n_target_classes=2).run(victim, x, y)
    model.clean = None
    short = {i: model.grad_passes[i] for i in (~res.success).nonzero().squeeze(1).tolist()
             if model.grad_passes[i] < 2 * 6}
    assert not short, f"counted robust after fewer than both targets: {short}"
    assert res.meta["stages"] == 2
    assert res.meta["resumed"] >= 1                    # this seeded run has such samples
    assert res.meta["unattacked_robust"] == 0


def test_deterministic_victim_still_skips_its_clean_mistakes():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Flatten(), nn.Linear(D, K))     # untrained: many clean mistakes
    x = torch.rand(20, *SHAPE)
    y = torch.arange(20) % K
    victim = Victim(model, ThreatModel(eps=0.05))
    wrong = int((victim.predict(x) != y).sum())
    assert 0 < wrong < 20
    res = get_attack("apgd-ce", n_iter=5).run(victim, x, y)
    assert res.meta["skipped_clean_mistakes"] == wrong and res.meta["attacked"] == 20 - wrong
    assert res.meta["resumed"] == 0 and res.meta["unattacked_robust"] == 0


# ----------------------------------------------------------------------------- keeping the best point
def coin_flip_task(n: int = 16):
    """Two classes; every clean image is grey (0.5), where the model's class-0 logit is the
    summed rate minus its mean: a single pass is right half of the time, so a 3-pass vote at
    the clean point says "misclassified" for about half the samples. Darkening the image by
    eps = 0.3 lowers the logit by ~10.8 against a noise std of ~0.85 (T=8): every attack's
    point is misclassified by every pass."""
    weight = torch.zeros(2, D)
    weight[0] = 1.0
    model = PoissonReadout(weight, torch.tensor([-0.5 * D, 0.0]), T=8)
    x = torch.full((n, *SHAPE), 0.5)
    y = torch.zeros(n, dtype=torch.long)
    return model, x, y


@pytest.mark.parametrize("name,options", [
    ("pgd", {"steps": 3}), ("fgsm", {}), ("mifgsm", {"steps": 3}), ("sapgd", {"steps": 3}),
    ("apgd-ce", {"n_iter": 3}),
])
def test_point_that_fooled_the_model_is_kept_over_a_noisy_clean_vote(name, options):
    """Before the fix a sample whose clean vote said "misclassified" kept z0 and threw the
    attack's point away; the fresh vote at z0 then called about half of them robust."""
    model, x, y = coin_flip_task()
    victim = Victim(model, ThreatModel(eps=0.3), eot=1, vote=3)
    assert victim.stochastic
    res = get_attack(name, **options).run(victim, x, y)
    assert res.success.all(), f"{int((~res.success).sum())} of {len(y)} broken samples lost"
    assert (res.z_adv != x).flatten(1).any(1).all()    # the attack's points, not z0
    assert (victim.predict(res.z_adv) != y).all()       # and another vote agrees


def test_best_points_order_of_preference():
    """fooling candidate > z0 the clean vote called misclassified > highest-loss candidate > z0."""
    z0 = torch.zeros(4, 1)
    best = BestPoints(z0, torch.tensor([True, True, False, False]), 0, None)
    idx = torch.arange(4)
    # a fooling candidate replaces z0 even where the clean vote said misclassified (sample 0);
    # a non-fooling one does not (sample 1) but beats a z0 the vote called correct (sample 2)
    best.update(idx, torch.full((4, 1), 1.0), torch.tensor([True, False, False, False]),
                torch.tensor([0.0, 5.0, 1.0, 1.0]))
    assert best.z.squeeze(1).tolist() == [1.0, 0.0, 1.0, 1.0]
    assert best.success.tolist() == [True, False, False, False]
    # the first fooling candidate stays; among non-fooling ones the higher loss wins
    best.update(idx, torch.full((4, 1), 2.0), torch.tensor([True, False, False, True]),
                torch.tensor([9.0, 9.0, 0.5, 0.0]))
    assert best.z.squeeze(1).tolist() == [1.0, 0.0, 1.0, 2.0]
    assert best.success.tolist() == [True, False, False, True]
    # a later vote called sample 0's point correct: the next fooling candidate replaces it,
    # a non-fooling one still has to beat its loss
    best.revoke(torch.tensor([0, 1]))
    best.update(idx[:2], torch.full((2, 1), 3.0), torch.tensor([True, False]), torch.tensor([0.0, -1.0]))
    assert best.z.squeeze(1).tolist()[:2] == [3.0, 3.0]   # sample 1: its z0 vote no longer holds
