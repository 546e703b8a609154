"""Gradient estimators: exact forward, backward equal to each estimator's formula on one
spiking layer (computed by hand here), spec parsing and restoration of the model."""

import math

import pytest
import torch

from snnrobust.estimators import ESTIMATORS, get_estimator
from snnrobust.estimators import ASSG
from snnrobust.errors import ConfigError
from snnrobust.spiking import IFNode, LIFNode, Surrogate, record_membranes, reset_states

T, B, N = 5, 3, 7
ALL_SPECS = ["bptt", "bptt:triangle:0.5", "bptt:rectangle:1:0.3", "ste", "bptr", "rga", "rga:0.3:1.5:0.6",
             "hart", "hart:0.4", "pdsg", "assg", "assg:0.45:2"]


def inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(T, B, N, generator=g) * 0.7 + 0.45
    grad_out = torch.randn(T, B, N, generator=g)
    return x, grad_out


def neuron_configs():
    return {
        "if-hard-detached": lambda: IFNode(detach_reset=True),
        "if-soft": lambda: IFNode(reset="soft"),
        "lif-hard-vreset": lambda: LIFNode(leak=0.8, reset="hard", v_reset=-0.2, threshold=0.9),
        "lif-soft-detached": lambda: LIFNode(leak=0.7, reset="soft", detach_reset=True),
    }


def layer_grad(neuron, spec, x, grad_out):
    """dL/dx for L = sum(grad_out * spikes) with the estimator applied to one layer."""
    est = get_estimator(spec)
    xx = x.clone().requires_grad_(True)
    with est.applied(neuron):
        neuron.reset_state()
        s = neuron(xx)
    (g,) = torch.autograd.grad((s * grad_out).sum(), xx)
    return s.detach(), g


def simulate(x, leak=1.0, th=1.0):
    """Reference dynamics, hard reset to 0: u_t = leak v_{t-1} + x_t, s_t = [u_t >= th],
    v_t = u_t (1 - s_t). Returns (u, s), [T, ...] each."""
    v = torch.zeros_like(x[0])
    us, ss = [], []
    for xt in x:
        u = leak * v + xt
        s = (u >= th).to(x.dtype)
        v = u * (1 - s)
        us.append(u)
        ss.append(s)
    return torch.stack(us), torch.stack(ss)


def bptt_reference(u, s, grad_out, hprime, leak=1.0):
    """BPTT by hand for hard reset with detached reset:
    dL/dx_k = sum_{t>=k} g_t h'_t prod_{j=k}^{t-1} leak (1 - s_j)."""
    grad = torch.zeros_like(u)
    for k in range(u.shape[0]):
        carry = torch.ones_like(u[0])
        acc = torch.zeros_like(u[0])
        for t in range(k, u.shape[0]):
            acc = acc + grad_out[t] * hprime[t] * carry
            carry = carry * leak * (1 - s[t])
        grad[k] = acc
    return grad


# -- forward -----------------------------------------------------------------------------
@pytest.mark.parametrize("spec", ALL_SPECS)
@pytest.mark.parametrize("config", list(neuron_configs()))
def test_forward_spikes_and_state_equal_plain_neuron(spec, config):
    make = neuron_configs()[config]
    x, g = inputs(1)
    plain, est_neuron = make(), make()
    with record_membranes(plain):
        ref = plain(x)
    s, _ = layer_grad(est_neuron, spec, x, g)
    assert torch.equal(s, ref)
    assert ref.sum() > 0 and ref.sum() < ref.numel()  # the test input both fires and stays silent
    # after the forward the membrane state is the same too
    assert torch.allclose(est_neuron.v.detach(), plain.v.detach(), atol=1e-6)
    with record_membranes(est_neuron):
        est = get_estimator(spec)
        with est.applied(est_neuron):
            est_neuron.reset_state()
            est_neuron(x)
    assert torch.allclose(est_neuron.membrane.detach(), plain.membrane.detach(), atol=1e-6)


# -- backward = formula -----------------------------------------------------------------
@pytest.mark.parametrize("leak", [1.0, 0.8])
@pytest.mark.parametrize("spec,hprime", [
    ("bptt", lambda d: (2 / 2) / (1 + (math.pi * 2 * d / 2) ** 2)),       # the model's own atan:2
    ("bptt:triangle:0.5", lambda d: torch.clamp(1 - d.abs() / 0.5, min=0) / 0.5),
    ("bptt:rectangle:1:0.3", lambda d: 0.3 * (d.abs() < 0.5).float() / 1.0),
    ("ste", lambda d: torch.ones_like(d)),
])
def test_bptt_surrogates_match_hand_bptt(spec, hprime, leak):
    x, g = inputs(2)
    neuron = LIFNode(leak=leak, reset="hard", detach_reset=True, surrogate="atan:2")
    _, grad = layer_grad(neuron, spec, x, g)
    u, s = simulate(x, leak)
    assert torch.allclose(grad, bptt_reference(u, s, g, hprime(u - 1.0), leak), atol=1e-5)
    assert neuron.surrogate == Surrogate("atan", 2.0)  # restored


def test_bptr_is_incoming_gradient_times_rate_mask():
    x, g = inputs(3)
    neuron = IFNode(detach_reset=True)
    s, grad = layer_grad(neuron, "bptr", x, g)
    mask = (s.mean(0) > 0).float()
    assert 0 < mask.mean() < 1
    assert torch.allclose(grad, g * mask)


@pytest.mark.parametrize("leak,spec,gamma,beta,tau", [
    (0.7, "rga", 0.2, 2.0, 0.7),          # tau = the neuron's leak factor
    (1.0, "rga", 0.2, 2.0, 1.0),          # IF: no sub-threshold band, slope 1/(2 theta)
    (0.9, "rga:0.3:1.5:0.5", 0.3, 1.5, 0.5),
])
def test_rga_is_rate_derivative_of_mean_input(leak, spec, gamma, beta, tau):
    torch.manual_seed(0)
    # x_bar covering every region: < 0, [0, (1-tau)th], ((1-tau)th, beta th], > beta th
    xbar = torch.tensor([-0.3, 0.0, 0.1, 0.25, 0.6, 1.0, 1.4, 2.4, 3.0]).repeat(B, 1)
    x = xbar + 0.2 * torch.randn(T, *xbar.shape)
    x = x - x.mean(0) + xbar
    g = torch.randn_like(x)
    neuron = LIFNode(leak=leak, reset="hard", detach_reset=True)
    _, grad = layer_grad(neuron, spec, x, g)
    lo, hi = (1 - tau) * 1.0, beta * 1.0
    slope = (1 - gamma * (1 - tau)) / ((beta - 1 + tau) * 1.0)
    xb = x.mean(0)
    fprime = torch.zeros_like(xb)
    for i, v in enumerate(xb.flatten().tolist()):
        if lo < v <= hi:
            fprime.view(-1)[i] = slope
        elif 0 <= v <= lo:
            fprime.view(-1)[i] = gamma
    expected = (fprime * g.mean(0)).expand_as(g)
    assert torch.allclose(grad, expected, atol=1e-6)
    assert (fprime == slope).any() and (fprime == 0).any()


def rga_fprime(neuron, spec, xbar):
    """f'(xbar) as the estimator's backward gives it: constant input xbar [M] for T steps and
    dL/ds_t = 1 give dL/dx_t = f'(xbar) * mean_t 1 at every t."""
    x = xbar.expand(T, -1).contiguous()
    _, grad = layer_grad(neuron, spec, x, torch.ones_like(x))
    assert torch.allclose(grad, grad[:1].expand_as(grad))  # the same at every step
    return grad[0]


def integral(neuron, spec, upper, n=20000):
    """Midpoint rule for the rate function f(upper) = integral_0^upper f'(xbar) dxbar (f' is
    piecewise constant, so the error is at most a few grid cells' worth: ~1e-4)."""
    dx = upper / n
    mid = (torch.arange(n, dtype=torch.float64) + 0.5) * dx
    return float(rga_fprime(neuron, spec, mid).sum() * dx)


def constant_input_rate(neuron, xbar, steps=400):
    """The neuron's empirical rate (spikes per step) for a constant input current xbar [M]."""
    neuron.reset_state()
    with torch.no_grad():
        return neuron(xbar.expand(steps, -1).contiguous()).mean(0)


RGA_NEURONS = {  # threshold != 1, IF and LIF, soft and hard reset (D = threshold - v_rest)
    "if-soft-th2": (lambda: IFNode(threshold=2.0, reset="soft"), 2.0),
    "if-soft-th0.5": (lambda: IFNode(threshold=0.5, reset="soft"), 0.5),
    "lif0.9-soft-th2": (lambda: LIFNode(threshold=2.0, leak=0.9, reset="soft"), 2.0),
    "lif0.5-soft-th0.5": (lambda: LIFNode(threshold=0.5, leak=0.5, reset="soft"), 0.5),
    "lif0.7-hard-th3-vreset-0.5": (lambda: LIFNode(threshold=3.0, leak=0.7, reset="hard", v_reset=-0.5), 3.5),
}


@pytest.mark.parametrize("spec,beta", [("rga", 2.0), ("rga:0.3:1.5", 1.5), ("rga:0.2:2:0.6", 2.0)])
@pytest.mark.parametrize("config", list(RGA_NEURONS))
def test_rga_rate_function_reaches_the_neurons_rate_at_beta_threshold(config, spec, beta):
    make, D = RGA_NEURONS[config]
    neuron = make()
    # the neuron itself fires every step for constant input beta * D >= D ...
    assert constant_input_rate(make(), torch.tensor([beta * D])).item() == 1.0
    # ... and the integrated RGA gradient says the same (the old slope gave 1.02 / 0.95 here)
    assert integral(neuron, spec, beta * D) == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize("config", list(RGA_NEURONS))
def test_rga_gradient_scales_with_one_over_threshold(config):
    """A neuron with distance D from rest to threshold and input x spikes exactly like a neuron
    with threshold 1 and input x / D, so its rate function is f_1(xbar / D) and its RGA
    gradient f_1'(xbar / D) / D — in the sub-threshold band as well as on the slope."""
    make, D = RGA_NEURONS[config]
    neuron = make()
    unit = LIFNode(threshold=1.0, leak=neuron.leak, reset=neuron.reset_mode)  # v_reset = 0
    xbar = (torch.linspace(-0.2, 2.5, 55, dtype=torch.float64) + 0.0123) * D  # off the band edges (ties)
    # the premise, checked on the forward: identical spikes for random inputs
    x = torch.rand(30, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 1.5 * D
    for n in (neuron, unit):
        n.reset_state()
    with torch.no_grad():
        assert torch.equal(neuron(x), unit(x / D))
    assert torch.allclose(rga_fprime(neuron, "rga", xbar) * D, rga_fprime(unit, "rga", xbar / D), atol=1e-12)
    # the rate at the edge of the band where the neuron is silent: gamma (1 - tau), not gamma (1 - tau) D
    tau = neuron.leak
    assert integral(neuron, "rga", (1 - tau) * D) == pytest.approx(0.2 * (1 - tau), abs=1e-3)


@pytest.mark.parametrize("threshold", [2.0, 0.5])
def test_rga_with_beta_1_is_the_if_neurons_rate(threshold):
    """IF with soft reset fires at rate min(xbar / theta, 1): RGA with beta = 1 (tau = 1, no
    sub-threshold band) must integrate to exactly that rate at every input."""
    neuron = IFNode(threshold=threshold, reset="soft")
    for frac in (0.1, 0.25, 0.5, 0.8, 1.0):
        xb = frac * threshold
        empirical = constant_input_rate(IFNode(threshold=threshold, reset="soft"), torch.tensor([xb])).item()
        assert empirical == pytest.approx(frac, abs=1 / 400)
        assert integral(neuron, "rga:0.2:1", xb) == pytest.approx(empirical, abs=3e-3)


def test_rga_rejects_a_band_that_alone_exceeds_one_spike_per_step():
    neuron = LIFNode(leak=0.5)
    with pytest.raises(ConfigError) as e:
        rga_fprime(neuron, "rga:3", torch.tensor([0.2]))
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("gamma", [1.0, 0.4])
def test_hart_time_averaged_gradient_detached_membrane_triangle(gamma):
    x, g = inputs(4)
    neuron = LIFNode(leak=0.9, reset="hard", detach_reset=True)
    _, grad = layer_grad(neuron, f"hart:{gamma}", x, g)
    u, _ = simulate(x, 0.9)
    tri = torch.clamp(1 - (u - 1).abs() / gamma, min=0) / gamma
    assert torch.allclose(grad, g.mean(0, keepdim=True) * tri, atol=1e-6)


def test_pdsg_gaussian_with_membrane_std():
    x, g = inputs(5)
    neuron = IFNode(detach_reset=True)
    _, grad = layer_grad(neuron, "pdsg", x, g)
    u, s = simulate(x)
    sigma = u.transpose(0, 1).reshape(B, -1).std(dim=1, unbiased=False).view(1, B, 1)
    hp = torch.exp(-((u - 1) ** 2) / (2 * sigma**2)) / (math.sqrt(2 * math.pi) * sigma)
    assert torch.allclose(grad, bptt_reference(u, s, g, hp), atol=1e-5)


def test_assg_adaptive_sharpness_over_iterations_and_reset():
    x1, g = inputs(6)
    x2 = x1 + 0.3 * torch.randn_like(x1)
    A, r, b = 0.4, 1.0, 0.9
    a = 2 * math.tan(math.pi * A / 2) / math.pi
    est = ASSG(A, r)
    neuron = IFNode(detach_reset=True)

    def grad_with(x):
        _, gr = layer_grad(neuron, est, x, g)
        return gr

    def atan(d, alpha):
        return (alpha / 2) / (1 + (math.pi * alpha * d / 2) ** 2)

    # first iteration: M = |u - th|, D = 0
    u1, s1 = simulate(x1)
    M = (u1 - 1).abs()
    D = torch.zeros_like(M)
    assert torch.allclose(grad_with(x1), bptt_reference(u1, s1, g, atan(u1 - 1, a / (M + r * D + 1e-4))), atol=1e-5)
    # second iteration: EMAs with beta = 0.9
    u2, s2 = simulate(x2)
    d2 = (u2 - 1).abs()
    M = b * M + (1 - b) * d2
    D = b * D + (1 - b) * (d2 - M).abs()
    assert torch.allclose(grad_with(x2), bptt_reference(u2, s2, g, atan(u2 - 1, a / (M + r * D + 1e-4))), atol=1e-5)
    assert torch.allclose(est.state(neuron)[0], M) and torch.allclose(est.state(neuron)[1], D)
    # reset(): the next pass starts the averages afresh
    est.reset()
    assert est.state(neuron) is None
    M2 = d2
    assert torch.allclose(grad_with(x2), bptt_reference(u2, s2, g, atan(u2 - 1, a / (M2 + 1e-4))), atol=1e-5)


# -- restoration and parsing -------------------------------------------------------------
@pytest.mark.parametrize("spec", ALL_SPECS)
def test_applied_restores_surrogate_and_estimator_even_on_error(spec):
    neurons = torch.nn.Sequential(IFNode(surrogate="sigmoid:3"), LIFNode(surrogate="triangle:1:0.3"))
    before = [(n.surrogate, n.estimator) for n in neurons]
    est = get_estimator(spec)
    with est.applied(neurons):
        changed = [(n.surrogate, n.estimator) for n in neurons]
    assert [(n.surrogate, n.estimator) for n in neurons] == before
    if spec != "bptt":
        assert changed != before
    with pytest.raises(RuntimeError):
        with est.applied(neurons):
            raise RuntimeError("boom")
    assert [(n.surrogate, n.estimator) for n in neurons] == before


def test_spec_round_trip_and_labels():
    for spec in ALL_SPECS:
        est = get_estimator(spec)
        assert get_estimator(est.to_dict()) == est
        assert get_estimator(est.spec()) == est
        assert est.label()
    assert get_estimator(None).label() == "BPTT[model surrogate]"
    assert get_estimator("bptt:triangle:0.5").label() == "BPTT[triangle:0.5]"
    assert get_estimator("hart:1.0").label() == "HART[γ=1.0]"
    assert set(ESTIMATORS) == {"bptt", "ste", "bptr", "rga", "hart", "pdsg", "assg", "source-ann", "encoder-smooth"}


@pytest.mark.parametrize("bad", ["nope", "hart:x", "hart:-1", "assg:1.5", "rga:0.2:2:1.5", "bptt:nosuch:1",
                                 "hart:1:2", {"name": "hart", "width": 2}, 42])
def test_bad_specs_give_one_line_config_error(bad):
    with pytest.raises(ConfigError) as e:
        get_estimator(bad)
    assert "\n" not in str(e.value)


# -- one neuron loop: every estimator equals the old separate implementations -------------
# Before the estimators ran on the neuron's own loop (SpikingNeuron.run), they carried two
# copies of the dynamics: a graph-free exact forward (BPTR, RGA, HART, PDSG's sigma) with a
# hand-written backward, and a BPTT loop with a replaced spike function (PDSG, ASSG). The
# reference below is that old way, written out independently of the package's loop, on a
# two-layer model (float64, both layers partly firing) for every estimator, IF and LIF, hard
# and soft reset; two passes so ASSG's running averages are compared as well.
REF_CONFIGS = {
    "if-hard": lambda: IFNode(reset="hard"),
    "if-hard-vreset-detached": lambda: IFNode(reset="hard", v_reset=-0.2, detach_reset=True),
    "if-soft": lambda: IFNode(reset="soft", threshold=0.8),
    "lif-hard-vreset": lambda: LIFNode(leak=0.8, reset="hard", v_reset=-0.2, threshold=0.9),
    "lif-soft-detached": lambda: LIFNode(leak=0.7, reset="soft", detach_reset=True),
}


def ref_dynamics(neuron, x, spike):
    """The old copy of the dynamics from rest: charge, spike(u - th, t), reset -> (s, u) [T, ...]."""
    lam, rest, th = neuron.leak, neuron.v_rest, neuron.threshold
    v = torch.full_like(x[0], rest)
    ss, us = [], []
    for t, xt in enumerate(x):
        v = rest + lam * (v - rest) + xt
        us.append(v)
        s = spike(v - th, t)
        sr = s.detach() if neuron.detach_reset else s
        v = v * (1 - sr) + neuron.v_reset * sr if neuron.reset_mode == "hard" else v - th * sr
        ss.append(s)
    return torch.stack(ss), torch.stack(us)


def ref_exact(neuron, x):
    with torch.no_grad():
        return ref_dynamics(neuron, x, lambda d, t: (d >= 0).to(d.dtype))


def _dx(x):
    """x - x.detach(): zero forward, identity Jacobian (to attach a chosen backward to a value)."""
    return x - x.detach()


class RefLayer:
    """One estimator the old way, for one layer; keeps ASSG's (M, D) across passes."""

    def __init__(self, spec):
        self.est = get_estimator(spec)
        self.assg_state = None

    def __call__(self, neuron, x):
        est, name = self.est, self.est.name
        if name in ("bptt", "ste"):
            sg = est.surrogate or neuron.surrogate
            return ref_dynamics(neuron, x, lambda d, t: sg.spike(d))[0]
        if name == "bptr":  # dL/dx_t = g_t * [mean_t s_t > 0]
            s, _ = ref_exact(neuron, x)
            return s + (s.mean(0) > 0).to(x.dtype) * _dx(x)
        if name == "rga":  # dL/dx_t = f'(mean_t x) * mean_t g_t
            s, _ = ref_exact(neuron, x)
            fp = est.rate_derivative(x.detach().mean(0), neuron.threshold, neuron.leak, neuron.v_rest)
            return s + (fp * _dx(x).mean(0)).unsqueeze(0)
        if name == "hart":  # dL/dx_t = mean_t' g_t' * tri(u_t - th), u from the exact forward
            s, u = ref_exact(neuron, x)
            gamma = est.params["gamma"]
            tri = torch.clamp(1 - (u - neuron.threshold).abs() / gamma, min=0) / gamma
            return s + (tri * _dx(x)).mean(0, keepdim=True)
        if name == "pdsg":  # BPTT, Gaussian surrogate with sigma = per-sample std of u
            _, u = ref_exact(neuron, x)
            sigma = u.transpose(0, 1).reshape(u.shape[1], -1).std(dim=1, unbiased=False).clamp_min(1e-6)
            sigma = sigma.view(-1, *([1] * (x.dim() - 2)))
            return ref_dynamics(neuron, x, lambda d, t: Surrogate("gaussian").spike(d, param=sigma))[0]
        if name == "assg":  # BPTT, ATan with alpha = a / (M + r D + 1e-4), EMAs over passes
            A, r, b = est.params["A"], est.params["r"], est.params["beta"]
            a = 2 * math.tan(math.pi * A / 2) / math.pi
            prev, Ms, Ds = self.assg_state, [], []

            def spike(d, t):
                dd = d.detach().abs()
                m = dd if prev is None else b * prev[0][t] + (1 - b) * dd
                dev = torch.zeros_like(dd) if prev is None else b * prev[1][t] + (1 - b) * (dd - m).abs()
                Ms.append(m)
                Ds.append(dev)
                return Surrogate("atan").spike(d, param=a / (m + r * dev + 1e-4))

            s = ref_dynamics(neuron, x, spike)[0]
            self.assg_state = (torch.stack(Ms), torch.stack(Ds))
            return s
        raise AssertionError(f"no reference for {name}")


def two_layer_model(make):
    """x [T, B, 6] -> Linear -> neuron -> Linear -> neuron -> spikes [T, B, 5], float64,
    weights scaled so that both layers fire on part of the inputs."""
    from snnrobust.spiking import SeqToBatch

    torch.manual_seed(0)
    l1, l2 = torch.nn.Linear(6, 8).double(), torch.nn.Linear(8, 5).double()
    with torch.no_grad():
        l1.weight.mul_(3)
        l2.weight.mul_(4)
        l2.bias.add_(0.3)
    return torch.nn.Sequential(SeqToBatch(l1), make().double(), SeqToBatch(l2), make().double())


@pytest.mark.parametrize("spec", ALL_SPECS)
@pytest.mark.parametrize("config", list(REF_CONFIGS))
def test_estimators_on_the_neuron_loop_equal_the_old_separate_dynamics(spec, config):
    model = two_layer_model(REF_CONFIGS[config])
    lin1, n1, lin2, n2 = model
    est, refs = get_estimator(spec), (RefLayer(spec), RefLayer(spec))
    gen = torch.Generator().manual_seed(1)
    for _ in range(2):  # the second pass sees ASSG's running averages
        x = (torch.rand(4, 3, 6, generator=gen, dtype=torch.float64) * 1.5).requires_grad_(True)
        w = torch.randn(4, 3, 5, generator=gen, dtype=torch.float64)
        with est.applied(model):
            reset_states(model)
            s = model(x)
        (grad,) = torch.autograd.grad((s * w).sum(), x)
        s1 = refs[0](n1, lin1(x))
        s_ref = refs[1](n2, lin2(s1))
        (grad_ref,) = torch.autograd.grad((s_ref * w).sum(), x)
        assert torch.equal(s, s_ref.detach())
        assert 0 < s1.mean() < 1 and 0 < s.mean() < 1  # both layers fire on part of the inputs
        assert torch.allclose(grad, grad_ref, rtol=1e-9, atol=1e-12)
    assert grad.abs().sum() > 0


# -- surrogates stay objects from the model to the suite ----------------------------------
def test_model_surrogate_is_an_object_and_the_width_sweep_keeps_the_stored_strings():
    from snnrobust.evaluation.engine import model_surrogate
    from snnrobust.evaluation.suites import SuiteContext, get_budget, reliable_estimators
    from snnrobust.evaluation.threat import ThreatModel

    model = torch.nn.Sequential(IFNode(surrogate="triangle:1:0.3"), LIFNode(surrogate=Surrogate("triangle", 1.0, 0.3)))
    has_spiking, sg = model_surrogate(model)
    assert has_spiking and sg == Surrogate("triangle", 1.0, 0.3)
    assert model_surrogate(torch.nn.Sequential(IFNode(surrogate="atan:2"), IFNode(surrogate="atan:3")))[1] is None
    assert model_surrogate(torch.nn.Linear(2, 2)) == (False, None)

    def estimators(own):
        ctx = SuiteContext(budget=get_budget("thorough"), threat=ThreatModel(eps=8 / 255), own_surrogate=own,
                           has_spiking=True, stochastic=False, num_classes=10)
        return reliable_estimators(ctx)

    # the same strings as the formatted-and-re-parsed sweep wrote (they are parts of stored attack ids)
    assert estimators(sg)[:4] == ["bptt:triangle:0.5:0.3", "bptt:triangle:1:0.3", "bptt:triangle:2:0.3",
                                  "bptt:triangle:4:0.3"]
    assert estimators("atan:2")[:4] == ["bptt:atan:4", "bptt:atan:2", "bptt:atan:1", "bptt:atan:0.5"]
    # a constant derivative has no width: only the model's own, once
    assert [e for e in estimators(Surrogate("straight-through")) if e.startswith("bptt")] == ["bptt:straight-through:1"]


# -- encoder-smooth: the phase encoder's gradient averaged over a window ---------------------
def test_encoder_smooth_passes_gradient_only_through_bits_the_window_can_flip():
    from snnrobust.spiking.encoders import PhaseEncoder, phase_bits
    from snnrobust.spiking.functional import use_encoder_smoothing

    enc = PhaseEncoder(T=8, K=8)
    x = torch.tensor([[0.0, 0.3, 1.0]], requires_grad=True)
    g = torch.ones(8, 1, 3)
    (ste,) = torch.autograd.grad((enc(x) * g).sum(), x)
    assert torch.equal(ste, torch.full((1, 3), 8.0))  # straight-through: 1 per bit, all 8 bits
    w = 0.025
    with use_encoder_smoothing(torch.nn.Sequential(enc), w):
        code = enc(x)
        (smooth,) = torch.autograd.grad((code * g).sum(), x)
    assert enc.smooth_width is None  # restored
    assert torch.equal(code, phase_bits(x.detach(), 8))  # the forward is the code itself
    hi, lo = phase_bits((x.detach() + w).clamp(0, 1), 8), phase_bits((x.detach() - w).clamp(0, 1), 8)
    assert torch.allclose(smooth, ((hi - lo) / (2 * w)).sum(0))
    # pixel 0: [0, 0.025] reaches 0.00000110b, so only bits 6 and 7 move (up); bits 1-5 never can
    per_bit = (hi - lo)[:, 0, 0]
    assert per_bit.tolist() == [0, 0, 0, 0, 0, 1, 1, 0]
    # the window is restored after an exception too
    with pytest.raises(RuntimeError):
        with use_encoder_smoothing(torch.nn.Sequential(enc), w):
            raise RuntimeError("attack crashed")
    assert enc.smooth_width is None


def test_encoder_smooth_estimator_in_the_reliable_suite_and_errors():
    from snnrobust.evaluation import ThreatModel, Victim
    from snnrobust.evaluation.suites import SuiteContext, get_budget, reliable_estimators
    from snnrobust.models import create_model

    phase = create_model("sew_resnet", layers=[1, 1], width=4, T=4, encoder="phase", encoder_options={"K": 4},
                         in_channels=1, num_classes=3, image_size=8).eval()
    direct = create_model("sew_resnet", layers=[1, 1], width=4, T=4, encoder="direct", in_channels=1, num_classes=3,
                          image_size=8).eval()
    x, y = torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 2, 0])
    v = Victim(phase, ThreatModel("linf", 0.1), estimator="encoder-smooth:0.05")
    _, g_smooth = v.grad(v.start(x), y)
    _, g_bptt = Victim(phase, ThreatModel("linf", 0.1)).grad(x, y)
    assert g_smooth.abs().sum() > 0 and not torch.allclose(g_smooth, g_bptt)
    # the same forward: the estimator changes only the encoder's backward
    with torch.no_grad():
        assert torch.equal(v.predict(x), Victim(phase, ThreatModel("linf", 0.1)).predict(x))
    with pytest.raises(ConfigError, match="has none; use bptt"):
        Victim(direct, ThreatModel("linf", 0.1), estimator="encoder-smooth").grad(x, y)
    with pytest.raises(ConfigError, match="must be < 1"):
        get_estimator("encoder-smooth:2")

    def estimators(smooth, perturb="pixels"):
        ctx = SuiteContext(budget=get_budget("quick"), threat=ThreatModel(eps=0.1, perturb=perturb),
                           own_surrogate="atan:2", has_spiking=True, stochastic=False, num_classes=10,
                           smooth_encoder=smooth)
        return reliable_estimators(ctx), ctx.notes

    est, notes = estimators(True)
    assert est[-1] == "encoder-smooth:0.025" and any("encoder-smooth:0.025 added" in n for n in notes)
    assert not any(e.startswith("encoder-smooth") for e in estimators(False)[0])
    est, notes = estimators(True, "spikes")
    assert not any(e.startswith("encoder-smooth") for e in est) and any("perturbs spikes" in n for n in notes)
