"""Victim and ThreatModel: projection, labels, modes restored, EOT, voting, BN-train
replication leaving the model intact, spike-tensor perturbation."""

import pytest
import torch
from torch import nn

from snnrobust.attacks import get_loss
from snnrobust.evaluation import ThreatModel, Victim, parse_eps
from snnrobust.errors import ConfigError
from snnrobust.spiking import PoissonEncoder, spiking_neurons


def images(n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 12, 12, generator=g), torch.randint(0, 10, (n,), generator=g)


# -- ThreatModel -------------------------------------------------------------------------
def test_parse_eps_and_validation():
    assert parse_eps("8/255") == pytest.approx(8 / 255)
    assert parse_eps(" 0.5 ") == 0.5 and parse_eps(0) == 0.0
    assert ThreatModel(eps="6/255").eps == pytest.approx(6 / 255)
    for bad in [dict(norm="l1"), dict(eps=-0.1), dict(eps=float("inf")), dict(eps="a/b"),
                dict(perturb="weights"), dict(bn_mode="frozen")]:
        with pytest.raises(ConfigError) as e:
            ThreatModel(**bad)
        assert "\n" not in str(e.value)
    with pytest.raises(ConfigError):
        ThreatModel.from_dict({"norm": "linf", "epsilon": 0.1})


def test_threat_round_trip_and_labels():
    t = ThreatModel("Linf", "8/255")
    assert ThreatModel.from_dict(t.to_dict()) == t
    assert t.label() == "Linf eps=8/255 (0.0314) on pixels" and not t.is_replication
    spikes = ThreatModel("linf", "6/255", perturb="spikes")
    assert "SPIKE TENSOR" in spikes.label() and "replicates Luu et al. 2025" in spikes.label()
    bn = ThreatModel("linf", "6/255", bn_mode="train")
    assert "BN in TRAIN mode" in bn.label() and "replicates Luu et al. 2025" in bn.label()
    assert t.with_eps("2/255").eps == pytest.approx(2 / 255) and t.eps == pytest.approx(8 / 255)


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("perturb", ["pixels", "spikes"])
def test_project_keeps_ball_and_bounds(norm, perturb):
    g = torch.Generator().manual_seed(1)
    shape = (4, 3, 5, 5) if perturb == "pixels" else (2, 4, 3, 5, 5)
    z0 = torch.rand(shape, generator=g)
    z = z0 + 2 * torch.randn(shape, generator=g)
    t = ThreatModel(norm, 0.3 if norm == "linf" else 1.5, perturb=perturb)
    p = t.project(z, z0, (0.0, 1.0))
    assert p.min() >= 0 and p.max() <= 1
    assert (t.norm_of(p - z0) <= t.eps + 1e-5).all()
    assert t.norm_of(p - z0).shape == (4,)
    # a point already inside stays put
    inside = t.project(z0 + 0.01 * (p - z0), z0)
    assert torch.allclose(t.project(inside, z0), inside)
    # eps = 0 gives z0
    assert torch.equal(t.with_eps(0).project(z, z0), z0)


# -- modes and restoration -----------------------------------------------------------------
def test_attack_mode_restores_flags_surrogates_estimators_even_on_error(tiny_sew):
    model = tiny_sew()
    model.train()
    before = [(n.surrogate, n.estimator) for n in spiking_neurons(model)]
    victim = Victim(model, ThreatModel(), estimator="hart:0.5")
    with victim.attack_mode():
        assert not any(m.training for m in model.modules())
        assert all(n.estimator is victim.estimator for n in spiking_neurons(model))
        with victim.attack_mode():  # re-entrant
            pass
        assert all(n.estimator is victim.estimator for n in spiking_neurons(model))
    assert all(m.training for m in model.modules())
    assert [(n.surrogate, n.estimator) for n in spiking_neurons(model)] == before

    victim = Victim(model, ThreatModel(bn_mode="train"), estimator="bptt:triangle:0.5")
    with pytest.raises(RuntimeError):
        with victim.attack_mode():
            assert all(n.surrogate.kind == "triangle" for n in spiking_neurons(model))
            raise RuntimeError("boom")
    assert all(m.training for m in model.modules())
    assert [(n.surrogate, n.estimator) for n in spiking_neurons(model)] == before


# (a narrow triangle such as width 0.5 can give an all-zero gradient on this untrained model:
#  real masking by a short surrogate support, which is why the width is the attacker's choice)
@pytest.mark.parametrize("spec", ["bptt", "bptt:triangle:2", "ste", "bptr", "rga", "hart", "pdsg", "assg"])
def test_grad_every_estimator_on_a_model_leaves_it_untouched(spec, tiny_sew):
    model = tiny_sew(threshold=0.3)  # untrained BN at threshold 1 leaves deep layers silent (BPTR/RGA -> 0)
    x, y = images()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    victim = Victim(model, ThreatModel(), estimator=spec)
    z0 = victim.start(x)
    loss, grad = victim.grad(z0, y)
    assert loss.shape == (4,) and grad.shape == x.shape
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    # scoring equals the plain model in eval mode
    model.eval()
    assert torch.allclose(victim.logits(z0), model(x), atol=1e-6)
    assert torch.equal(victim.predict(z0), model(x).argmax(1))


def test_grad_matches_plain_autograd_for_deterministic_model(tiny_sew):
    model = tiny_sew(encoder="direct")
    x, y = images()
    victim = Victim(model, ThreatModel())
    loss, grad = victim.grad(x, y, loss="ce")
    model.eval()
    xx = x.clone().requires_grad_(True)
    ref = torch.nn.functional.cross_entropy(model(xx), y, reduction="sum")
    (g,) = torch.autograd.grad(ref, xx)
    assert torch.allclose(grad, g, atol=1e-6)
    # targeted losses and a foreign loss callable
    t = (y + 1) % 10
    lt, _ = victim.grad(x, y, loss="ce", target=t)
    assert torch.allclose(lt, -torch.nn.functional.cross_entropy(victim.logits(x), t, reduction="none"), atol=1e-5)
    lc, _ = victim.grad(x, y, loss=get_loss("cw"))
    assert lc.shape == (4,)
    with pytest.raises(ConfigError):
        victim.grad(x, y, loss="dlr-targeted")


def test_masked_model_gives_zero_gradient_not_an_error(tiny_sew):
    model = tiny_sew(encoder_options={"backward": "zero"})
    x, y = images()
    _, grad = Victim(model, ThreatModel()).grad(x, y)
    assert torch.equal(grad, torch.zeros_like(x))


def test_foreign_module_and_module_wrapper():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(144, 10))
    x, y = images()
    victim = Victim(net, ThreatModel("l2", 0.5))
    assert not victim.stochastic and victim.eot == 1 and victim.vote == 1
    mod = victim.module()
    mod.train()  # external code cannot change the attack mode
    xx = x.clone().requires_grad_(True)
    out = mod(xx)
    assert torch.allclose(out, net(x)) and out.requires_grad
    with pytest.raises(ConfigError):
        Victim(net, ThreatModel(perturb="spikes"))
    with pytest.raises(ConfigError):
        victim.start(x * 255)


# -- EOT and voting ------------------------------------------------------------------------
def test_eot_lowers_gradient_variance_on_poisson_model(tiny_sew):
    model = tiny_sew(encoder="poisson")
    model.encoder.manual_seed(0)  # reproducible test; the victim never reseeds it
    x, y = images(2)

    def spread(eot, calls=8):
        victim = Victim(model, ThreatModel(), eot=eot)
        assert victim.stochastic
        grads = torch.stack([victim.grad(x, y)[1] for _ in range(calls)])
        return grads.var(0).mean().item()

    v1, v16 = spread(1), spread(16)
    assert v1 > 0
    assert v16 < 0.3 * v1
    assert Victim(model, ThreatModel()).eot == 10 and Victim(model, ThreatModel()).vote == 10


class CoinModel(nn.Module):
    """Class 0 with probability p (one Poisson draw of pixel value p), else class 1."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = PoissonEncoder(1, seed=0)

    def forward(self, x):
        s = self.encoder(x).mean(0).flatten(1)[:, :1]  # [B, 1] in {0, 1}
        return torch.cat([s, 1 - s], dim=1)


def test_vote_makes_stochastic_predictions_stable():
    model = CoinModel()
    x = torch.full((64, 1, 2, 2), 0.8)
    single = Victim(model, ThreatModel(), vote=1)
    voted = Victim(model, ThreatModel(), vote=25)
    assert voted.stochastic
    p1 = torch.stack([single.predict(x) for _ in range(4)])
    p25 = torch.stack([voted.predict(x) for _ in range(4)])
    assert (p1 == 0).float().mean() < 0.95  # one pass is noisy (about 80 % class 0)
    assert (p25 == 0).float().mean() >= 0.99  # the vote of 25 passes is stable
    probs = voted.logits(x).exp()
    assert torch.allclose(probs.sum(1), torch.ones(64), atol=1e-5)


def test_vote_ties_go_to_the_smallest_label():
    class Alternating(nn.Module):
        stochastic = True

        def __init__(self):
            super().__init__()
            self.calls = 0

        def forward(self, x):
            self.calls += 1
            out = torch.zeros(x.shape[0], 3)
            out[:, 2 if self.calls % 2 else 1] = 1.0
            return out

    assert torch.equal(Victim(Alternating(), vote=4).predict(torch.zeros(2, 1)), torch.tensor([1, 1]))


# -- seed-000 replication options --------------------------------------------------------
def test_bn_train_mode_leaves_running_statistics_unchanged(tiny_sew):
    model = tiny_sew()
    x, y = images(6)
    with torch.no_grad():  # give BN non-trivial running statistics
        model.train()
        model(x)
    model.eval()
    buffers = {k: v.clone() for k, v in model.state_dict().items()}
    train_victim = Victim(model, ThreatModel(bn_mode="train"))
    _, g_train = train_victim.grad(x, y)
    _, g_eval = Victim(model, ThreatModel()).grad(x, y)
    assert all(torch.equal(buffers[k], v) for k, v in model.state_dict().items())
    assert not torch.allclose(g_train, g_eval)  # batch statistics really were used
    assert not model.training
    # scoring inside the attack mode still uses eval-mode BN
    with train_victim.attack_mode():
        inside = train_victim.logits(x)
    assert torch.allclose(inside, model(x), atol=1e-6)


def test_spike_tensor_perturbation(tiny_sew):
    model = tiny_sew(encoder="phase", T=3)
    x, y = images()
    victim = Victim(model, ThreatModel("linf", "6/255", perturb="spikes"))
    z0 = victim.start(x)
    assert z0.shape == (3, 4, 1, 12, 12) and victim.batch_dim == 1 and victim.bounds == (0.0, 1.0)
    model.eval()
    assert torch.allclose(victim.logits(z0), model(x), atol=1e-6)
    loss, grad = victim.grad(z0, y)
    assert grad.shape == z0.shape and loss.shape == (4,)
    assert grad.abs().sum() > 0
    p = victim.project(z0 + torch.randn_like(z0), z0)
    assert (p - z0).abs().max() <= 6 / 255 + 1e-6 and p.min() >= 0 and p.max() <= 1
    # code ranges of the other encoders
    weighted = tiny_sew(encoder="phase", encoder_options={"weighted": True})
    assert Victim(weighted, ThreatModel(perturb="spikes")).bounds == (0.0, 0.5)
    signed = tiny_sew(encoder="poisson", encoder_options={"signed": True})
    sv = Victim(signed, ThreatModel(perturb="spikes"))
    assert sv.bounds == (-1.0, 1.0) and not sv.stochastic  # the draw is fixed once in start()
    d = Victim(model, ThreatModel()).describe()
    assert d["threat_model"]["perturb"] == "pixels" and d["eot"] == 1 and d["estimator"]["name"] == "bptt"


# -- overflowing gradients --------------------------------------------------------------
class _Planted(torch.autograd.Function):
    """Identity forward; backward returns a planted input gradient (with inf and NaN entries)."""

    @staticmethod
    def forward(ctx, x, planted):
        ctx.planted = planted
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        return ctx.planted.clone(), None


class _Overflow(nn.Module):
    def __init__(self, planted):
        super().__init__()
        self.planted = planted

    def forward(self, x):
        f = _Planted.apply(x, self.planted).flatten(1)
        return torch.stack([f.sum(1), -f.sum(1)], 1)


def test_nonfinite_gradient_becomes_its_limit_direction_and_is_counted():
    inf, nan = float("inf"), float("nan")
    planted = torch.tensor([[0.3, -inf, inf, 0.2],    # infinite entries: their sign survives, the rest is 0
                            [0.3, nan, -0.7, 0.1],    # NaN only: NaN -> 0, finite entries kept
                            [0.5, -0.5, 0.25, 1.0]])  # finite: untouched
    model = _Overflow(planted.view(3, 1, 2, 2))
    x, y = torch.full((3, 1, 2, 2), 0.5), torch.zeros(3, dtype=torch.long)
    victim = Victim(model, ThreatModel("linf", 0.1))
    _, g = victim.grad(x, y)
    expected = torch.tensor([[0.0, -1.0, 1.0, 0.0], [0.3, 0.0, -0.7, 0.1], [0.5, -0.5, 0.25, 1.0]])
    assert torch.equal(g.view(3, 4), expected)
    assert victim.nonfinite_samples == 2
    model.planted = planted[2:].view(1, 1, 2, 2)
    _, g = victim.grad(x[2:], y[2:])
    assert torch.equal(g.view(1, 4), expected[2:]) and victim.nonfinite_samples == 2  # a finite gradient is not counted


def test_evaluation_reports_overflowed_gradients():
    from snnrobust.evaluation.engine import evaluate

    planted = torch.tensor([[0.3, -float("inf"), 0.1, 0.2], [0.5, -0.5, 0.25, 1.0]]).view(2, 1, 2, 2)
    x, y = torch.full((2, 1, 2, 2), 0.5), torch.zeros(2, dtype=torch.long)
    res = evaluate(_Overflow(planted), x, y, attack="pgd", attack_options={"steps": 3}, progress=False,
                   threat=ThreatModel("linf", 0.1))
    assert any("overflowed" in n and "limit direction" in n for n in res.notes)
    assert "overflowed" in res.table()


@pytest.mark.parametrize("spec", ["bptt", "bptt:triangle:2", "rga"])
def test_the_cpu_kernel_gives_the_same_scores_and_gradients_and_is_the_path_taken(spec, tiny_sew, monkeypatch):
    """With the compiled neuron kernel enabled, scoring passes are bit-identical and gradients
    through the neurons' own dynamics equal the reference loop's to float rounding; the kernel
    runs every scoring pass, and the backward of every neuron unless an estimator hooks the layer."""
    from snnrobust.spiking import cpu_kernel

    model = tiny_sew(threshold=0.3, encoder="direct")
    x, y = images()
    victim = Victim(model, ThreatModel(), estimator=spec)
    ref_logits, (ref_loss, ref_grad) = victim.logits(x), victim.grad(x, y)
    calls = {"forward": 0, "backward": 0}
    for name in calls:
        real = getattr(cpu_kernel, name)

        def counted(*a, _real=real, _name=name, **k):
            calls[_name] += 1
            return _real(*a, **k)
        monkeypatch.setattr(cpu_kernel, name, counted)
    n_neurons = len(spiking_neurons(model))
    with cpu_kernel.kernel_used():
        logits = victim.logits(x)
        assert calls["forward"] == n_neurons and calls["backward"] == 0
        loss, grad = victim.grad(x, y)
    assert not cpu_kernel.enabled() and not any(n.fused for n in spiking_neurons(model))  # both restored
    assert torch.equal(logits, ref_logits)
    assert torch.allclose(loss, ref_loss, atol=1e-6)
    assert ref_grad.abs().sum() > 0 and torch.allclose(grad, ref_grad, rtol=1e-4, atol=1e-6)
    hooked = spec == "rga"  # a layer estimator runs its own loop (its forward calls the no-grad kernel)
    assert calls["backward"] == (0 if hooked else n_neurons)
