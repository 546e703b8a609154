"""Attacks: analytic worst case on linear models, feasibility of every attack, monotonicity in
steps/restarts/eps, agreement with the official APGD-CE, transfer, masking labels, registry."""

import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from snnrobust.evaluation import ThreatModel, Victim
from snnrobust.attacks.registry import ATTACKS, attack_options, get_attack, list_attacks
from snnrobust.attacks.sapgd import eta_schedule
from snnrobust.attacks.sweep import eps_sweep
from snnrobust.errors import ConfigError

K = 5          # classes of the synthetic task
SHAPE = (1, 6, 6)


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: thread start-up dominates (conftest)


def blobs(n, seed, spread=0.15):
    """K Gaussian blobs around fixed prototypes in [0.2, 0.8]^36, clamped to [0, 1]."""
    protos = 0.2 + 0.6 * torch.rand(K, *SHAPE, generator=torch.Generator().manual_seed(123))
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % K
    return (protos[y] + spread * torch.randn(n, *SHAPE, generator=g)).clamp(0, 1), y


def mlp(seed=0, hidden=32):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(SHAPE), hidden), nn.ReLU(), nn.Linear(hidden, K))


def train(model, steps=150):
    x, y = blobs(500, 1)
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def trained():
    return train(mlp(0))


@pytest.fixture(scope="module")
def data():
    return blobs(200, 2)


def victim(model, norm="linf", eps=0.08, **kw):
    return Victim(model, ThreatModel(norm=norm, eps=eps), **kw)


def run(name, v, x, y, **options):
    return get_attack(name, **options).run(v, x, y)


# ----------------------------------------------------------------------------- analytic worst case
@pytest.mark.parametrize("name,options,norm", [
    ("fgsm", {}, "linf"), ("pgd", {"steps": 20}, "linf"), ("pgd", {"steps": 20, "random_start": False}, "linf"),
    ("fgsm", {}, "l2"),
    # from a random start L2 PGD only approaches the optimum asymptotically; from z0 it is exact
    ("pgd", {"steps": 20, "random_start": False}, "l2"),
])
def test_linear_model_reaches_analytic_worst_case(name, options, norm):
    """Binary linear model, margin m(x) = (w_y - w_o)·x + (b_y - b_o): the worst case in the ball
    lowers it by eps·||w_y - w_o||_1 (L-inf) or eps·||w_y - w_o||_2 (L2) — when no pixel bound
    is active (x in [0.3, 0.7])."""
    torch.manual_seed(1)
    lin = nn.Linear(math.prod(SHAPE), 2)
    with torch.no_grad():
        lin.weight.mul_(3.0)
    model = nn.Sequential(nn.Flatten(), lin)
    x = 0.3 + 0.4 * torch.rand(16, *SHAPE)
    with torch.no_grad():
        y = model(x).argmax(1)
    eps = 0.05 if norm == "linf" else 0.3
    v = victim(model, norm, eps)
    res = run(name, v, x, y, **options)

    dw = lin.weight[y] - lin.weight[1 - y]                     # [B, D]
    db = lin.bias[y] - lin.bias[1 - y]
    margin = lambda z: (dw * z.flatten(1)).sum(1) + db        # noqa: E731
    p = 1 if norm == "linf" else 2
    expected = margin(x) - eps * dw.norm(p=p, dim=1)
    with torch.no_grad():
        assert torch.allclose(margin(res.z_adv), expected, atol=1e-4)
        assert torch.equal(res.success, margin(res.z_adv) < 0)


# ----------------------------------------------------------------------------- feasibility
def _options(name, trained_model):
    return {"pgd": {"steps": 5, "restarts": 2}, "sapgd": {"steps": 8, "restarts": 2}, "mifgsm": {"steps": 5},
            "apgd-ce": {"n_iter": 5}, "apgd-dlr": {"n_iter": 5}, "apgd-t": {"n_iter": 5, "n_target_classes": 2},
            "fab-t": {"n_iter": 5, "n_target_classes": 2}, "square": {"n_queries": 30},
            "square-aa": {"n_queries": 30}, "noise": {"draws": 3},
            "transfer": {"sources": [trained_model], "inner_options": {"steps": 3}},
            }.get(name, {})


@pytest.mark.parametrize("name,norm,eps", [(n, norm, eps) for n in sorted(ATTACKS)
                                            for norm, eps in (("linf", 0.1), ("l2", 0.8))
                                            if norm in ATTACKS[n].norms])  # event attacks: test_event_threats
def test_every_attack_stays_in_ball_and_bounds(name, norm, eps, trained):
    target = mlp(5)                                # untrained target: many samples already wrong
    x, y = blobs(24, 7, spread=0.5)                # many pixels at 0 or 1: the bounds are active
    v = victim(target, norm, eps)
    res = run(name, v, x, y, **_options(name, trained))
    assert res.z_adv.shape == x.shape
    assert res.z_adv.min() >= 0 and res.z_adv.max() <= 1
    assert (v.threat.norm_of(res.z_adv - x) <= eps + 1e-5).all()
    assert res.success.dtype == torch.bool and res.success.shape == y.shape
    assert torch.equal(res.success, v.predict(res.z_adv) != y)
    # samples misclassified from the start stay misclassified (unchanged-or-better)
    assert res.success[v.predict(x) != y].all()
    assert res.meta["attack"] == name and res.meta["eps"] == pytest.approx(eps) and res.meta["norm"] == norm
    json.dumps(res.meta), json.dumps(get_attack(name, **_options(name, trained)).to_dict())  # JSON-ready
    if name in ("pgd", "mifgsm", "sapgd"):
        steps = get_attack(name, **_options(name, trained)).config.steps
        assert res.loss_trace.shape == (steps + 1, y.shape[0]) and torch.isfinite(res.loss_trace).all()


def test_spike_tensor_perturbation_stays_in_code_range(tiny_sew):
    model = tiny_sew()
    x = torch.rand(4, 1, 12, 12)
    y = torch.arange(4)
    v = Victim(model, ThreatModel(eps=0.3, perturb="spikes"))
    z0 = v.start(x)
    for name, opts in (("pgd", {"steps": 2}), ("sapgd", {"steps": 2}), ("noise", {"draws": 2})):
        res = run(name, v, z0, y, **opts)
        assert res.z_adv.shape == z0.shape
        lo, hi = v.bounds
        assert res.z_adv.min() >= lo and res.z_adv.max() <= hi
        assert (v.threat.norm_of(res.z_adv - z0) <= 0.3 + 1e-6).all()
    with pytest.raises(ConfigError, match="pixels only"):
        run("apgd-ce", v, z0, y)


def test_stochastic_victim_uses_eot_and_rescored_votes(tiny_sew):
    model = tiny_sew(encoder="poisson")
    x, y = torch.rand(3, 1, 12, 12), torch.arange(3)
    v = Victim(model, ThreatModel(eps=0.1), eot=2, vote=3)
    assert v.stochastic
    res = run("pgd", v, x, y, steps=2)
    assert (v.threat.norm_of(res.z_adv - x) <= 0.1 + 1e-6).all()
    assert res.meta["victim"]["eot"] == 2 and res.meta["victim"]["vote"] == 3
    aa = run("apgd-ce", v, x, y, n_iter=2)
    assert aa.meta["eot_iter"] == 2


# ----------------------------------------------------------------------------- strength and monotonicity
def test_more_steps_and_restarts_never_raise_robust_accuracy(trained, data):
    x, y = data
    v = victim(trained, eps=0.08)
    accs = [run("pgd", v, x, y, steps=s).robust_accuracy for s in (1, 5, 20)]
    assert accs[0] >= accs[1] >= accs[2]
    r1 = run("pgd", v, x, y, steps=5, restarts=1)
    r3 = run("pgd", v, x, y, steps=5, restarts=3)
    assert r3.robust_accuracy <= r1.robust_accuracy
    assert not (r1.success & ~r3.success).any()    # restart 0 is identical, later ones only add
    assert r3.meta["restarts_run"] >= 1


def test_pgd_agrees_with_official_apgd_ce(trained, data):
    x, y = data
    v = victim(trained, eps=0.1)
    clean = (v.predict(x) == y).float().mean().item()
    ours = run("pgd", v, x, y, steps=50, restarts=3).robust_accuracy
    official = run("apgd-ce", v, x, y, n_iter=100)
    assert official.meta["implementation"].startswith("pyautoattack")
    assert ours < clean - 0.1                       # the eps is large enough to matter
    assert abs(ours - official.robust_accuracy) <= 0.02


@pytest.mark.parametrize("norm,eps", [("linf", 0.1), ("l2", 1.0)])
def test_square_is_as_strong_as_the_official_square(trained, data, norm, eps):
    """Our Square (windows per sample) against AutoAttack's (one window per iteration for the
    batch): never weaker by more than 4 points on 200 samples. (On these 6x6 images ours is
    much stronger: the official code never draws a window touching the last row or column.)"""
    x, y = data
    v = victim(trained, norm=norm, eps=eps)
    clean = (v.predict(x) == y).float().mean().item()
    ours = run("square", v, x, y, n_queries=300)
    official = run("square-aa", v, x, y, n_queries=300)
    assert ours.meta["implementation"].startswith("snnrobust")
    assert ours.robust_accuracy < clean - 0.1
    assert ours.robust_accuracy <= official.robust_accuracy + 0.04, (ours.robust_accuracy,
                                                                     official.robust_accuracy)


def test_square_parts():
    from snnrobust.attacks.square import window_fraction, window_pattern

    for s in (3, 4, 5, 8):
        eta = window_pattern(s)
        assert eta.shape == (s, s) and abs(eta.norm().item() - 1) < 1e-6
        assert (eta[: s // 2] >= 0).all() and (eta[s // 2:] <= 0).all()   # two opposite-signed halves
        top = eta[s // 2:]                      # each half peaks at its centre
        assert top.abs().argmax().item() == (top.shape[0] // 2) * s + s // 2
    assert window_fraction(0.8, 0, 5000, True) == 0.8
    assert window_fraction(0.8, 5000 * 60 // 10000, 5000, True) == 0.2     # past 10 and 50 of 10,000
    assert window_fraction(0.8, 9999, 10000, False) == 0.8 / 512


def test_sapgd_mifgsm_rfgsm_beat_noise(trained, data):
    x, y = data
    v = victim(trained, eps=0.1)
    clean = (v.predict(x) == y).float().mean().item()
    noise = run("noise", v, x, y, draws=5).robust_accuracy
    accs = {name: run(name, v, x, y).robust_accuracy for name in ("sapgd", "mifgsm", "fgsm", "rfgsm")}
    for name in ("sapgd", "mifgsm", "fgsm"):
        assert accs[name] < clean - 0.3 and accs[name] < noise, name
    # R-FGSM spends half its budget on a random step, so it is weaker than FGSM but beats noise
    assert accs["fgsm"] <= accs["rfgsm"] < min(noise, clean)
    assert accs["sapgd"] <= accs["fgsm"]
    assert noise <= clean


def test_loss_rises_along_the_pgd_path(trained, data):
    x, y = data
    res = run("pgd", victim(trained), x, y, steps=10, random_start=False)
    trace = res.loss_trace
    assert trace.shape == (11, 200)
    assert trace[-1].mean() > trace[0].mean()
    # the first row is the loss at z0 itself
    assert torch.allclose(trace[0], F.cross_entropy(trained(x), y, reduction="none").detach(), atol=1e-5)


def test_sapgd_eta_schedule_halves_at_fixed_fractions():
    etas = eta_schedule(0.1, 10, (0.3, 0.6, 0.8))
    assert etas == pytest.approx([0.1] * 3 + [0.05] * 3 + [0.025] * 2 + [0.0125] * 2)


def test_eps_sweep_is_monotone(trained, data):
    x, y = data
    out = eps_sweep("pgd", {"steps": 10}, victim(trained), x, y, [0.0, 0.04, 0.08, 0.16])
    assert [e for e, _ in out] == pytest.approx([0.0, 0.04, 0.08, 0.16])
    accs = [r.robust_accuracy for _, r in out]
    assert accs == sorted(accs, reverse=True) and accs[-1] < accs[0]
    assert out[2][1].meta["step_size"] == pytest.approx(2.5 * 0.08 / 10)


# ----------------------------------------------------------------------------- transfer
def test_transfer_from_the_model_itself_equals_white_box(trained, data):
    x, y = data
    x, y = x[:60], y[:60]
    v = victim(trained)
    white = run("pgd", v, x, y, steps=10, seed=3)
    tr = run("transfer", v, x, y, sources=[trained], inner="pgd", inner_options={"steps": 10, "seed": 3})
    assert torch.equal(tr.z_adv, white.z_adv) and torch.equal(tr.success, white.success)
    assert tr.meta["n_sources"] == 1 and tr.meta["per_source"][0]["class"] == "Sequential"


def test_transfer_keeps_first_fooling_candidate(trained, data):
    x, y = data
    x, y = x[:60], y[:60]
    v = victim(trained)
    other = train(mlp(1))
    single = run("transfer", v, x, y, sources=[other], inner_options={"steps": 10})
    both = run("transfer", v, x, y, sources=[other, trained], inner_options={"steps": 10})
    white = run("pgd", v, x, y, steps=10)
    assert not (single.success & ~both.success).any()       # a second source only adds
    assert both.robust_accuracy <= min(single.robust_accuracy, white.robust_accuracy)
    d = get_attack("transfer", sources=[other], inner_options={"steps": 10}).to_dict()
    assert d["name"] == "transfer" and d["inner"]["steps"] == 10 and len(d["sources"]) == 1


@pytest.mark.parametrize("name,options", [("pgd", {"steps": 6, "random_start": False}), ("mifgsm", {"steps": 6}),
                                          ("sapgd", {"steps": 6})])
def test_iterative_attacks_take_one_gradient_per_step(trained, data, name, options):
    """The last iterate needs its loss (trace, best point), not its gradient: steps gradients, not steps + 1."""
    x, y = data
    x, y = x[:20], y[:20]
    v = victim(trained)
    res = run(name, v, x, y, **options)
    assert v.gradient_images == 6 * 20
    trace = res.loss_trace
    assert trace.shape[0] == 7 and torch.isfinite(trace).all()
    if name == "pgd":  # classic PGD keeps the last iterate where nothing fooled the model: its trace ends at its loss
        keep = ~res.success
        want = v.loss(res.z_adv, y)[keep]
        assert torch.allclose(trace[-1][keep], want.cpu(), atol=1e-5)


class CountingModule(nn.Module):
    """A source whose forward passes are counted (in images)."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.images = inner, 0

    def forward(self, x):
        self.images += x.shape[0]
        return self.inner(x)


def test_transfer_reuses_points_crafted_on_the_same_source(trained, data):
    x, y = data
    x, y = x[:60], y[:60]
    source = CountingModule(train(mlp(1)))
    opts = {"steps": 8, "random_start": False}
    fresh = run("transfer", victim(trained), x, y, sources=[source], inner_options=opts, reuse=False)
    first = run("transfer", victim(trained), x[:30], y[:30], sources=[source], inner_options=opts)
    assert first.meta["per_source"][0]["reused_samples"] == 0
    spent = source.images
    # another target, a superset of the images: only the 30 new ones are crafted
    other = train(mlp(2))
    second = run("transfer", victim(other), x, y, sources=[source], inner_options=opts)
    assert second.meta["per_source"][0]["reused_samples"] == 30
    assert 0 < source.images - spent < spent * 2
    again = run("transfer", victim(trained), x, y, sources=[source], inner_options=opts)
    assert again.meta["per_source"][0]["reused_samples"] == 60
    # the points are those a fresh crafting gives (deterministic source and attack)
    assert torch.equal(again.z_adv, fresh.z_adv) and torch.equal(again.success, fresh.success)
    # other settings are another crafting
    more = run("transfer", victim(trained), x, y, sources=[source], inner_options={"steps": 9, "random_start": False})
    assert more.meta["per_source"][0]["reused_samples"] == 0


def test_transfer_crafts_again_when_the_source_changes(trained, data):
    x, y = data
    x, y = x[:20], y[:20]
    source = train(mlp(1))
    opts = {"steps": 5}
    run("transfer", victim(trained), x, y, sources=[source], inner_options=opts)
    with torch.no_grad():
        source[1].weight.data.mul_(1.5)     # through .data: no version counter moves
    res = run("transfer", victim(trained), x, y, sources=[source], inner_options=opts)
    assert res.meta["per_source"][0]["reused_samples"] == 0
    with torch.no_grad():
        source[3].bias.add_(0.1)
    res = run("transfer", victim(trained), x, y, sources=[source], inner_options=opts)
    assert res.meta["per_source"][0]["reused_samples"] == 0


def test_transfer_source_votes_like_the_target_unless_told():
    from toy_models import NoisyLinear, data as toy_data

    x, y = toy_data(8)
    src = NoisyLinear()
    t = victim(NoisyLinear(), vote=3, eot=1)
    kw = dict(sources=[src], inner_options={"steps": 2}, source_eot=1)
    tr = run("transfer", t, x[:8], y[:8], **kw, reuse=False)
    assert tr.meta["per_source"][0]["vote"] == 3
    tr = run("transfer", t, x[:8], y[:8], **kw, source_vote=2, reuse=False)
    assert tr.meta["per_source"][0]["vote"] == 2
    # a deterministic source takes one pass for EOT and vote, whatever was asked
    from toy_models import Linear

    tr = run("transfer", t, x[:8], y[:8], sources=[Linear()], inner_options={"steps": 2}, source_eot=4,
             source_vote=3, reuse=False)
    assert (tr.meta["per_source"][0]["eot"], tr.meta["per_source"][0]["vote"]) == (1, 1)
    tr = run("transfer", t, x[:8], y[:8], sources=[src], inner_options={"steps": 2}, source_eot=4, reuse=False)
    assert tr.meta["per_source"][0]["eot"] == 4


# ----------------------------------------------------------------------------- masking replication
def test_abort_grad_norm_stops_on_zero_gradients_and_says_so(tiny_sew):
    model = tiny_sew(encoder_options={"backward": "zero"})
    x, y = torch.rand(4, 1, 12, 12), torch.arange(4)
    v = victim(model, eps=0.1)
    res = run("pgd", v, x, y, steps=5, abort_grad_norm=1e-6)
    assert res.meta["aborted"] is True and res.meta["abort_step"] == 0
    assert res.meta["abort_grad_norm_value"] == 0.0 and "Luu et al. 2025" in res.meta["abort_rule"]
    assert res.loss_trace.shape == (6, 4)                      # carried forward
    assert (v.threat.norm_of(res.z_adv - x) <= 0.1 + 1e-6).all()
    full = run("pgd", v, x, y, steps=5)                        # without the rule: runs, reports masking
    assert full.meta["aborted"] is False and full.meta["zero_grad_fraction"] == 1.0


def test_autoattack_reports_zero_gradient_warning_and_keeps_global_rng():
    model = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(SHAPE), K))
    masked = nn.Sequential(_Round(), model)
    x, y = blobs(10, 3)
    torch.manual_seed(42)
    expected = torch.rand(3)
    torch.manual_seed(42)
    res = run("apgd-t", victim(masked), x, y, n_iter=3, n_target_classes=1)
    assert torch.equal(torch.rand(3), expected)                # pyautoattack's reseeding is contained
    assert any("zero gradient" in w for w in res.meta["warnings"])


class _Round(nn.Module):
    """Quantises pixels to {0, 1}: the gradient is exactly zero everywhere (masked model)."""

    def forward(self, x):
        return torch.round(x)


# ----------------------------------------------------------------------------- registry and configs
def test_registry_lists_every_attack_with_a_description():
    names = list_attacks()
    assert set(names) == {"fgsm", "rfgsm", "pgd", "mifgsm", "sapgd", "apgd-ce", "apgd-dlr", "apgd-t", "fab-t",
                          "square", "square-aa", "noise", "transfer", "eventflip", "retime"}
    assert all(isinstance(d, str) and d and "\n" not in d for d in names.values())
    assert "steps" in attack_options("pgd")
    d = get_attack("PGD", steps=7, step_size=0.01).to_dict()
    assert d == {"name": "pgd", "steps": 7, "step_size": 0.01, "random_start": True, "restarts": 1, "loss": "ce",
                 "abort_grad_norm": None, "seed": 0}


@pytest.mark.parametrize("name,options,match", [
    ("nope", {}, "unknown attack 'nope'"),
    ("pgd", {"stepz": 3}, "no option 'stepz'"),
    ("pgd", {"steps": 0}, "steps"),
    ("pgd", {"loss": "hinge"}, "loss"),
    ("pgd", {"random_start": "yes"}, "random_start"),
    ("sapgd", {"decay_at": [1.5]}, "decay_at"),
    ("square", {"loss": "xent"}, "loss"),
    ("transfer", {}, "sources"),
    ("transfer", {"sources": [nn.Linear(2, 2)], "inner": "transfer"}, "transfer"),
    ("transfer", {"sources": [nn.Linear(2, 2)], "inner_options": {"bad": 1}}, "bad"),
])
def test_bad_options_give_one_line_config_errors(name, options, match):
    with pytest.raises(ConfigError, match=match) as err:
        get_attack(name, **options)
    assert "\n" not in str(err.value)


def test_apgd_t_needs_four_classes():
    model = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(SHAPE), 2))
    x, y = blobs(4, 3)
    with pytest.raises(ConfigError, match="4 classes"):
        run("apgd-t", victim(model), x, y % 2)


def test_square_l2_shape_bug_is_a_clear_error():
    # the official L2 Square mis-shapes its windows on 12x12 images: a one-line ConfigError, not a traceback;
    # snnrobust's own Square runs there
    from snnrobust.evaluation import ThreatModel, Victim
    from snnrobust.errors import ConfigError as _CE

    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(144, 10))
    v = Victim(m, ThreatModel(norm="l2", eps=0.5))
    x, y = torch.rand(16, 1, 12, 12), torch.randint(0, 10, (16,))
    with pytest.raises(_CE, match="square-aa"):
        get_attack("square-aa", n_queries=30).run(v, v.start(x), y)
    res = get_attack("square", n_queries=30).run(v, v.start(x), y)
    assert (res.z_adv - x).flatten(1).norm(dim=1).max() <= 0.5 + 1e-5


# ----------------------------------------------------------------------------- declared kind and budget
# what the evaluation needs to know about each attack, declared on its class (never guessed by name)
DECLARED = {  # name: (kind, steps_option, fixed_steps, restarts_option)
    "fgsm": ("single-step", None, 1, None), "rfgsm": ("single-step", None, 1, None),
    "pgd": ("gradient", "steps", None, "restarts"), "mifgsm": ("gradient", "steps", None, None),
    "sapgd": ("gradient", "steps", None, "restarts"),
    "apgd-ce": ("gradient", "n_iter", None, "n_restarts"), "apgd-dlr": ("gradient", "n_iter", None, "n_restarts"),
    "apgd-t": ("gradient", "n_iter", None, "n_restarts"), "fab-t": ("gradient", "n_iter", None, "n_restarts"),
    "square": ("score", "n_queries", None, "n_restarts"), "square-aa": ("score", "n_queries", None, "n_restarts"),
    "noise": ("noise", "draws", None, None),
    "transfer": ("transfer", None, None, None),
    "eventflip": ("gradient", "steps", None, "restarts"), "retime": ("gradient", "steps", None, "restarts"),
}


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_every_attack_declares_its_kind_and_budget_options(name):
    from snnrobust.attacks.base import ATTACK_KINDS
    from snnrobust.attacks.registry import attack_class, attack_kind

    cls = attack_class(name)
    assert (cls.kind, cls.steps_option, cls.fixed_steps, cls.restarts_option) == DECLARED[name]
    assert attack_kind(name) in ATTACK_KINDS
    for option in (cls.steps_option, cls.restarts_option):   # a declared option is a real one
        assert option is None or option in attack_options(name)


def test_budget_is_read_through_the_declared_options(trained):
    from snnrobust.attacks.registry import attack_budget

    def budget(name, **options):
        return attack_budget(get_attack(name, **options).to_dict())

    assert budget("pgd", steps=7, restarts=3) == (7, 3)
    assert budget("mifgsm", steps=4) == (4, None)
    assert budget("apgd-t", n_iter=9, n_restarts=2) == (9, 2)
    assert budget("square", n_queries=40) == (40, 1)
    assert budget("noise", draws=6) == (6, None)
    assert budget("fgsm") == budget("rfgsm") == (1, None)
    # transfer: the budget of the attack crafted on the sources
    assert budget("transfer", sources=[trained], inner="sapgd", inner_options={"steps": 5, "restarts": 2}) == (5, 2)
    assert budget("transfer", sources=[trained], inner="fgsm") == (1, None)
    # a run that failed before its attack was built records only the name
    assert attack_budget({"name": "fgsm"}) == (1, None) and attack_budget({"name": "pgd"}) == (None, None)


def test_steps_and_restarts_are_written_to_the_declared_options():
    from snnrobust.attacks.registry import with_budget

    assert with_budget("pgd", {"loss": "dlr"}, 20, 2) == {"loss": "dlr", "steps": 20, "restarts": 2}
    assert with_budget("apgd-ce", {}, 20, 2) == {"n_iter": 20, "n_restarts": 2}
    assert with_budget("square", {}, 300, None) == {"n_queries": 300}
    assert with_budget("noise", {}, 8, None) == {"draws": 8}
    assert with_budget("fgsm", {"loss": "cw"}, None, None) == {"loss": "cw"}
    assert with_budget("transfer", {"inner": "mifgsm"}, 4, 3) == {"inner": "mifgsm", "inner_options": {"steps": 4}}
    assert with_budget("transfer", {}, 4, 3)["inner_options"] == {"steps": 4, "restarts": 3}   # inner pgd
    for name, steps, restarts in (("fgsm", 5, None), ("noise", None, 2), ("mifgsm", None, 2)):
        with pytest.raises(ConfigError, match=f"attack {name} has no steps/restarts option") as err:
            with_budget(name, {}, steps, restarts)
        assert "\n" not in str(err.value)


def test_a_new_attack_implements_only_its_search(trained, data):
    """An attack that declares its options and implements ``_search`` gets the shared run path:
    the first search on every sample, later ones only on the samples not yet fooled, the best
    point kept per sample, its own meta, and a re-scored result."""
    from dataclasses import dataclass

    from snnrobust.attacks.base import Attack, Candidates, random_like

    @dataclass
    class ShiftConfig:
        tries: int = 3
        seed: int = 0

        def validate(self, attack):
            pass

    calls = []

    class Shift(Attack):
        """Try k: every entry moved by eps * sign of a fresh random draw."""
        name, Config, kind, restarts_option = "shift", ShiftConfig, "noise", "tries"

        def _search(self, s, zs, ys, start, restart):
            calls.append((restart, zs.shape[0], start is zs))
            sign = random_like(zs, s.gen, "normal", s.bdim).sign()  # per-sample keyed draws
            return Candidates(s.victim.project(zs + s.eps * sign, zs), torch.zeros(zs.shape[0]))

        def _meta(self, s):
            return {"tries_made": s.runs}

    x, y = data
    x, y = x[:60], y[:60]
    v = victim(trained, eps=0.3)
    res = Shift(tries=3).run(v, x, y)
    assert [c[0] for c in calls] == [0, 1, 2] and all(c[2] for c in calls)   # no random_start option
    assert calls[0][1] == 60 and 0 < calls[1][1] < 60 and calls[2][1] <= calls[1][1]
    assert res.meta["tries_made"] == 3 and res.meta["attack"] == "shift" and res.meta["tries"] == 3
    assert torch.equal(res.success, v.predict(res.z_adv) != y)
    assert (v.threat.norm_of(res.z_adv - x) <= 0.3 + 1e-6).all() and res.loss_trace is None
    # the same seed gives the same run
    calls.clear()
    again = Shift(tries=3).run(v, x, y)
    assert torch.equal(again.z_adv, res.z_adv)


def test_pgd_and_fgsm_on_the_shared_path_match_their_formulas(trained, data):
    """The shared run path changes no algorithm: FGSM and PGD from z0 (one restart) equal the
    textbook updates written out here, bit for bit."""
    x, y = data
    x, y = x[:50], y[:50]
    v = victim(trained, eps=0.1)
    _, g = v.grad(x, y, loss="ce")
    fgsm = v.project(x + 0.1 * g.sign(), x)
    assert torch.equal(run("fgsm", v, x, y).z_adv, v.project(fgsm, x))
    z, alpha = x, 2.5 * 0.1 / 4
    for _ in range(4):
        _, g = v.grad(z, y, loss="ce")
        z = v.project(z + alpha * g.sign(), z0=x)
    res = run("pgd", v, x, y, steps=4, random_start=False)
    clean_wrong = v.predict(x) != y
    # the kept point is the last iterate, except z0 for clean mistakes the iterate does not fool
    keep_z0 = clean_wrong & (v.predict(z) == y)
    expected = torch.where(keep_z0[:, None, None, None], x, z)
    assert torch.equal(res.z_adv, v.project(expected, x))
