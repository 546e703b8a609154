"""Spiking primitives: neuron traces computed by hand, surrogate formulas, encoders, reset."""

import math

import pytest
import torch

from snnrobust.errors import ConfigError
from snnrobust.spiking import (IFNode, LIFNode, Surrogate, SURROGATES, create_encoder, phase_bits, record_membranes,
                               reset_states, use_estimator, use_surrogate)


def run(neuron, currents):
    x = torch.tensor(currents, dtype=torch.float32).view(-1, 1)
    with record_membranes(neuron):
        s = neuron(x)
    return s.view(-1).tolist(), neuron.membrane.view(-1).tolist(), float(neuron.v)


def test_if_hard_reset_trace():
    # v: 0.6 -> 1.2 (spike, reset to 0) -> 0.6 -> 1.2 (spike) -> 0.5
    s, mem, v = run(IFNode(threshold=1.0, reset="hard", v_reset=0.0), [0.6, 0.6, 0.6, 0.6, 0.5])
    assert s == [0, 1, 0, 1, 0]
    assert mem == pytest.approx([0.6, 1.2, 0.6, 1.2, 0.5])
    assert v == pytest.approx(0.5)


def test_if_soft_reset_trace():
    # soft reset subtracts the threshold: 0.6, 1.2->0.2, 0.8, 1.4->0.4, 0.9
    s, mem, v = run(IFNode(threshold=1.0, reset="soft"), [0.6, 0.6, 0.6, 0.6, 0.5])
    assert s == [0, 1, 0, 1, 0]
    assert mem == pytest.approx([0.6, 1.2, 0.8, 1.4, 0.9])
    assert v == pytest.approx(0.9)


def test_lif_hard_reset_trace():
    # lam = 0.5, v_reset = -0.1: v = -0.1 + 0.5 (v + 0.1) + x
    n = LIFNode(threshold=1.0, leak=0.5, reset="hard", v_reset=-0.1)
    s, mem, _ = run(n, [0.8, 0.8, 0.8])
    v1 = -0.1 + 0.5 * 0.0 + 0.8  # 0.7, no spike
    v2 = -0.1 + 0.5 * (v1 + 0.1) + 0.8  # 1.1 spike -> -0.1
    v3 = -0.1 + 0.5 * 0.0 + 0.8  # 0.7
    assert mem == pytest.approx([v1, v2, v3])
    assert s == [0, 1, 0]


def test_lif_soft_reset_trace():
    # lam = 0.9, soft reset, threshold 0.5
    n = LIFNode(threshold=0.5, leak=0.9, reset="soft")
    s, mem, v = run(n, [0.3, 0.3, 0.3])
    v1 = 0.3  # no spike
    v2 = 0.9 * v1 + 0.3  # 0.57 spike -> 0.07
    v3 = 0.9 * (v2 - 0.5) + 0.3  # 0.363
    assert mem == pytest.approx([v1, v2, v3])
    assert s == [0, 1, 0]
    assert v == pytest.approx(v3)


def test_detach_reset_changes_only_gradient():
    x = torch.tensor([[0.7], [0.7], [0.7]], requires_grad=True)
    grads, outs = [], []
    for detach in (False, True):
        n = IFNode(reset="hard", detach_reset=detach, surrogate="atan:2")
        out = n(x)
        (g,) = torch.autograd.grad(out.sum(), x)
        grads.append(g)
        outs.append(out.detach())
    assert torch.equal(outs[0], outs[1])
    assert not torch.allclose(grads[0], grads[1])


FORMULAS = {
    "atan": lambda x, a: (a / 2) / (1 + (math.pi * a * x / 2) ** 2),
    "sigmoid": lambda x, a: a * torch.sigmoid(a * x) * (1 - torch.sigmoid(a * x)),
    "fast-sigmoid": lambda x, a: 1 / (1 + a * x.abs()) ** 2,
    "triangle": lambda x, w: torch.clamp(1 - x.abs() / w, min=0) / w,
    "rectangle": lambda x, w: (x.abs() < w / 2).float() / w,
    "gaussian": lambda x, s: torch.exp(-x ** 2 / (2 * s ** 2)) / (math.sqrt(2 * math.pi) * s),
    "exponential": lambda x, a: (a / 2) * torch.exp(-a * x.abs()),
    "straight-through": lambda x, a: torch.ones_like(x),
}


@pytest.mark.parametrize("kind", sorted(SURROGATES))
@pytest.mark.parametrize("param", [0.5, 2.0])
def test_surrogate_backward_equals_formula(kind, param):
    x = torch.linspace(-2, 2, 81, requires_grad=True)
    sg = Surrogate(kind, param)
    y = sg.spike(x)
    assert torch.equal(y, (x >= 0).float())
    (g,) = torch.autograd.grad(y.sum(), x)
    assert torch.allclose(g, FORMULAS[kind](x.detach(), param), atol=1e-6)


def test_seed001_scaled_triangle():
    # dO/dU = (0.3/theta) max(0, 1 - |U/theta - 1|) with theta = 2
    theta = 2.0
    u = torch.linspace(0, 4, 41, requires_grad=True)
    n = IFNode(threshold=theta, surrogate=Surrogate("triangle", theta, 0.3))
    (g,) = torch.autograd.grad(n.fire(u).sum(), u)
    assert torch.allclose(g, (0.3 / theta) * torch.clamp(1 - (u.detach() / theta - 1).abs(), min=0), atol=1e-6)


def test_surrogate_parse_and_errors():
    assert Surrogate.parse("triangle:1:0.3") == Surrogate("triangle", 1.0, 0.3)
    assert Surrogate.parse("atan").param == 2.0
    with pytest.raises(ConfigError):
        Surrogate.parse("nope:1")
    with pytest.raises(ConfigError):
        Surrogate("atan", -1.0)


def test_use_surrogate_restores():
    n = IFNode(surrogate="atan:2")
    with use_surrogate(n, "triangle:0.5"):
        assert n.surrogate == Surrogate("triangle", 0.5)
    assert n.surrogate == Surrogate("atan", 2.0)
    with pytest.raises(RuntimeError):
        with use_estimator(n, lambda neuron, x: x):
            raise RuntimeError("boom")
    assert n.estimator is None


def test_poisson_rate_converges_to_pixel():
    x = torch.tensor([[0.0, 0.1, 0.5, 0.9, 1.0]])
    enc = create_encoder("poisson", T=4000, seed=1)
    rate = enc(x).mean(0)
    assert torch.allclose(rate, x, atol=0.03)
    enc2 = create_encoder("poisson", T=10, seed=7)
    a, b = enc2(x), None
    enc2.manual_seed(7)
    b = enc2(x)
    assert torch.equal(a, b)  # seedable


def test_poisson_signed_seed001():
    x = torch.tensor([[0.0, 0.25, 0.5, 1.0]])
    s = create_encoder("poisson", T=3000, signed=True, seed=0)(x)
    assert set(s.unique().tolist()) <= {-1.0, 0.0, 1.0}
    assert torch.allclose(s.mean(0), (x - 0.5) / 0.5, atol=0.04)


@pytest.mark.parametrize("K", [4, 8])
def test_phase_reconstructs_within_2_pow_minus_k(K):
    x = torch.rand(1000)
    x[:3] = torch.tensor([0.0, 1.0, 0.5])
    bits = phase_bits(x, K)
    w = torch.pow(2.0, -torch.arange(1, K + 1).float()).view(-1, 1)
    rec = (bits * w).sum(0)
    assert (x - rec).abs().max() <= 2.0**-K + 1e-7
    assert torch.all(rec <= x + 1e-7)
    # weighted encoder over one period reconstructs the same value
    enc = create_encoder("phase", T=K, K=K, weighted=True)
    assert torch.allclose(enc(x.view(1, -1)).sum(0).view(-1), rec)


def test_phase_steps_cycle_bits_and_gradient_defined():
    enc = create_encoder("phase", T=10, K=8)
    x = torch.full((1, 1), 0.75, requires_grad=True)  # bits 1,1,0,0,...
    s = enc(x)
    assert s.view(-1).tolist() == [1, 1, 0, 0, 0, 0, 0, 0, 1, 1]
    (g,) = torch.autograd.grad(s.sum(), x)
    assert g.item() == pytest.approx(10.0)  # straight-through: d bit / dx := 1 per step
    enc0 = create_encoder("phase", T=4, backward="zero")
    x2 = torch.rand(2, 3, requires_grad=True)
    assert not enc0(x2).requires_grad


def test_latency_and_direct():
    enc = create_encoder("latency", T=5)
    x = torch.tensor([[1.0, 0.5, 0.0]])
    s = enc(x)
    assert s[:, 0, 0].tolist() == [1, 0, 0, 0, 0]  # brightest fires first
    assert s[:, 0, 1].tolist() == [0, 0, 1, 0, 0]
    assert s[:, 0, 2].sum() == 0  # at or below threshold: silent
    d = create_encoder("direct", T=3)(x)
    assert d.shape == (3, 1, 3) and torch.equal(d[2], x)


def test_encoder_errors():
    with pytest.raises(ConfigError):
        create_encoder("phase", T=4, K=0)
    with pytest.raises(ConfigError):
        create_encoder("nope", T=4)
    with pytest.raises(ConfigError):
        create_encoder("poisson", T=4, colour="red")
    with pytest.raises(ConfigError):
        create_encoder("direct", T=0)


def test_reset_clears_all_state(tiny_sew):
    m = tiny_sew()
    x = torch.rand(3, 1, 12, 12)
    y1 = m(x)
    neurons = [mod for mod in m.modules() if hasattr(mod, "v")]
    assert neurons and all(n.v is not None for n in neurons)
    reset_states(m)
    assert all(n.v is None for n in neurons)
    # a forward does not depend on what ran before it (models reset themselves)
    m(torch.rand(3, 1, 12, 12))
    assert torch.equal(m(x), y1)


# -- Surrogate as a value object: canonical spec, widening declared on the kind -----------
def test_surrogate_spec_is_the_canonical_string_and_parses_back():
    assert Surrogate("atan", 2.0).spec() == "atan:2"
    assert Surrogate("triangle", 1.0, 0.3).spec() == "triangle:1:0.3"
    assert Surrogate("atan", 1 / 3).spec() == "atan:0.333333"
    assert Surrogate("ste").spec() == "straight-through:1"
    for kind in SURROGATES:
        for sg in (Surrogate(kind), Surrogate(kind, 0.7, 0.3)):
            assert Surrogate.parse(sg.spec()) == sg


@pytest.mark.parametrize("kind", sorted(SURROGATES))
@pytest.mark.parametrize("factor", [0.5, 4.0])
def test_surrogate_widened_stretches_the_derivative_by_the_factor(kind, factor):
    sg = Surrogate(kind, 1.5, 0.3)
    wide = sg.widened(factor)
    assert (wide.kind, wide.scale) == (kind, 0.3)
    assert SURROGATES[kind].param_is in ("sharpness", "width", "none")
    if not sg.has_width:  # a constant derivative: nothing to widen
        assert wide == sg
        return
    expected = 1.5 / factor if SURROGATES[kind].param_is == "sharpness" else 1.5 * factor
    assert wide.param == pytest.approx(expected)
    # the widened derivative at factor * x is the original at x up to one constant
    x = torch.linspace(-0.5, 0.5, 41, dtype=torch.float64)
    ratio = wide.grad(factor * x) / sg.grad(x)
    assert torch.allclose(ratio, ratio[20].expand_as(ratio))


def test_surrogate_widened_matches_the_old_string_forms():
    # the strings the suite's surrogate-width sweep wrote before (stored in attack ids)
    assert Surrogate.parse("triangle:1:0.3").widened(2).spec() == "triangle:2:0.3"
    assert Surrogate.parse("atan:2").widened(4).spec() == "atan:0.5"
    assert Surrogate.parse("gaussian:0.5").widened(0.5).spec() == "gaussian:0.25"
    with pytest.raises(ConfigError):
        Surrogate("atan").widened(0)


# -- the one time loop: SpikingNeuron.run and its estimator hooks --------------------------
def test_run_is_the_forward_and_its_hooks_change_only_the_backward():
    x = torch.tensor([[0.6, 0.2], [0.7, 0.9], [0.5, 0.4], [0.8, 0.3]], requires_grad=True)
    w = torch.tensor([[1.0, -2.0], [0.5, 1.0], [-1.0, 3.0], [2.0, 0.5]])
    n = LIFNode(leak=0.9, reset="hard", surrogate="atan:2")
    ref = n(x)
    v_after = n.v.detach().clone()
    n.reset_state()
    s, mem = n.run(x, record=True)
    assert torch.equal(s, ref) and torch.equal(n.v.detach(), v_after)
    assert mem.shape == x.shape and n.membrane is None  # returned, not stored without record_membrane
    # keep_state=False: a look-ahead pass leaves the state alone
    n.reset_state()
    n.run(x, keep_state=False)
    assert n.v is None
    # fire hook: called with (u - threshold, t) at every step; straight-through and a detached
    # recurrence give dL/dx_t = w_t exactly (du_t/dx_t = 1, nothing crosses steps)
    seen = []

    def fire(d, t):
        seen.append(t)
        return Surrogate("straight-through").spike(d)

    s2, mem2 = n.run(x, fire=fire, detach_recurrence=True, keep_state=False, record=True)
    assert seen == [0, 1, 2, 3] and torch.equal(s2, ref) and torch.allclose(mem2, mem)
    (g,) = torch.autograd.grad((s2 * w).sum(), x)
    assert torch.equal(g, w)
    # without detaching, gradient crosses steps through the leak and the reset
    (g_bptt,) = torch.autograd.grad((n.run(x, fire=fire, keep_state=False)[0] * w).sum(), x)
    assert not torch.allclose(g_bptt, w)


@pytest.mark.parametrize("neuron", [
    IFNode(threshold=1.0, reset="hard"), IFNode(threshold=0.7, reset="soft"),
    IFNode(threshold=1.0, reset="hard", v_reset=-0.3), LIFNode(threshold=1.3, leak=0.9, reset="soft"),
    LIFNode(threshold=1.0, leak=0.8, reset="hard", v_reset=0.2, detach_reset=True)])
def test_no_grad_loop_equals_the_autograd_loop_bit_for_bit(neuron):
    # scoring passes and query attacks take the in-place loop; its spikes, membrane trace and
    # carried state must be exactly the autograd loop's, across two chained calls
    gen = torch.Generator().manual_seed(3)
    xs = [torch.randn(6, 4, 3, 5, generator=gen) * 1.5 for _ in range(2)]
    outs = {}
    for grad in (True, False):
        neuron.reset_state()
        got = []
        with torch.set_grad_enabled(grad):
            for x in xs:
                s, m = neuron.run(x.requires_grad_(grad), record=True)
                got += [s.detach(), m.detach(), neuron.v.detach().clone()]
        outs[grad] = got
    assert outs[True][0].sum() > 0 and (outs[True][0] == 0).any()  # both spikes and silences occur
    for a, b in zip(outs[True], outs[False]):
        assert torch.equal(a, b)
    neuron.reset_state()


@pytest.fixture(params=[False, True], ids=["torch", "cpu-kernel"])
def kernel(request):
    """The fused function in torch, or through the compiled CPU kernel (built once, then cached)."""
    from snnrobust.spiking import cpu_kernel

    cpu_kernel.enable(request.param)
    yield request.param
    cpu_kernel.enable(False)


@pytest.mark.parametrize("leak,reset,v_reset", [(1.0, "hard", 0.0), (1.0, "hard", -0.3), (1.0, "soft", 0.0),
                                                (0.8, "hard", 0.2), (0.9, "soft", 0.0)])
@pytest.mark.parametrize("detach_reset", [False, True])
@pytest.mark.parametrize("kind", sorted(SURROGATES))
def test_fused_bptt_equals_the_reference_loop(leak, reset, v_reset, detach_reset, kind, kernel):
    """The fused autograd function (one node for all T steps), in torch or in the compiled CPU
    kernel, gives the reference loop's spikes and final membrane exactly and its input gradient
    to float tolerance, for IF and LIF, hard and soft reset, detached or not, every surrogate (at
    a non-default width and a scale)."""
    from snnrobust.spiking import cpu_kernel
    from snnrobust.spiking.neurons import SpikingNeuron
    from snnrobust.spiking.surrogates import surrogate_kind

    sg = Surrogate(kind, SURROGATES[kind].default * 1.5, 0.7)
    n = SpikingNeuron(threshold=0.8, leak=leak, reset=reset, v_reset=v_reset, detach_reset=detach_reset,
                      surrogate=sg)
    gen = torch.Generator().manual_seed(7)
    x = (torch.randn(6, 5, 4, 3, generator=gen) * 0.9).requires_grad_()
    w = torch.randn(6, 5, 4, 3, generator=gen)
    got = {}
    for fused in (True, False):
        n.fused = fused
        n.reset_state()
        s = n(x)
        (s * w).sum().backward()
        got[fused] = (s.detach(), x.grad.clone(), n.v.detach().clone())
        x.grad = None
    assert got[True][0].sum() > 0 and (got[True][0] == 0).any()
    assert torch.equal(got[True][0], got[False][0]) and torch.equal(got[True][2], got[False][2])
    assert got[False][1].abs().max() > 0
    torch.testing.assert_close(got[True][1], got[False][1], rtol=1e-5, atol=1e-6)
    assert cpu_kernel.usable(x, surrogate_kind(kind).grad) == kernel   # the kernel path was the one taken


@pytest.mark.parametrize("reset, detach_reset", [("hard", False), ("soft", True)])
def test_the_fused_neuron_keeps_a_channels_last_layout_and_its_values(reset, detach_reset, kernel):
    """On [T, B, C, H, W] whose steps are channels-last (what ``channels_last`` layers give),
    the fused neuron, in torch or in the kernel, returns the same spikes, membrane and gradient
    as on the contiguous tensor, in the input's own layout (no copy back to contiguous)."""
    from snnrobust.spiking.neurons import SpikingNeuron

    n = SpikingNeuron(threshold=0.8, leak=0.9, reset=reset, detach_reset=detach_reset)
    n.fused = True
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(5, 4, 3, 6, 7, generator=gen)
    w = torch.randn(5, 4, 3, 6, 7, generator=gen)
    cl = x.flatten(0, 1).contiguous(memory_format=torch.channels_last).view(x.shape)
    assert not cl.is_contiguous() and torch.equal(cl, x)
    got = []
    for inp in (x, cl):
        inp = inp.clone(memory_format=torch.preserve_format).requires_grad_()
        n.reset_state()
        s = n(inp)
        (s * w).sum().backward()
        got.append((s.detach(), n.v.detach(), inp.grad, s.stride()))
    assert torch.equal(got[0][0], got[1][0]) and torch.equal(got[0][1], got[1][1])
    assert got[0][0].sum() > 0
    torch.testing.assert_close(got[1][2], got[0][2], rtol=1e-5, atol=1e-6)
    assert got[1][3] == cl.stride()  # the spikes came back channels-last


def test_channels_last_layers_give_the_same_logits_and_gradients(tiny_sew, kernel):
    from snnrobust.spiking import channels_last
    from snnrobust.spiking.layers import SeqToBatch

    model = tiny_sew(threshold=0.3, encoder="direct", T=4).eval()
    x = torch.rand(6, 1, 12, 12)

    def run():
        z = x.clone().requires_grad_()
        out = model(z)
        return out.detach(), torch.autograd.grad(out.logsumexp(1).sum(), z)[0]

    ref = run()
    seen = []
    layers = [m for m in model.modules() if isinstance(m, SeqToBatch)]
    handles = [m.module.register_forward_pre_hook(lambda mod, a: seen.append(a[0].is_contiguous(
        memory_format=torch.channels_last) if a[0].dim() == 4 else True)) for m in layers]
    with channels_last(model):
        got = run()
    assert seen and all(seen)   # every image batch entered its layer channels-last
    assert not any(m.channels_last for m in layers)  # restored
    for h in handles:
        h.remove()
    torch.testing.assert_close(got[0], ref[0], rtol=1e-5, atol=1e-6)
    assert ref[1].abs().sum() > 0
    torch.testing.assert_close(got[1], ref[1], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("estimator", [None, "hart:1.0", "pdsg", "assg:0.4", "bptt:triangle:0.5"])
def test_models_input_gradient_is_the_reference_loops_under_every_estimator(tiny_sew, estimator):
    """Through a whole SEW-ResNet: the input gradient with the fused neurons equals the
    reference loop's (estimators that change the backward take the reference loop themselves)."""
    from snnrobust.evaluation import ThreatModel, Victim
    from snnrobust.estimators import get_estimator
    from snnrobust.spiking.functional import fused_bptt

    model = tiny_sew(encoder="direct").eval()
    with torch.no_grad():  # untrained weights x 4: neurons fire
        for p in model.parameters():
            if p.dim() > 1:
                p.mul_(4.0)
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(6, 1, 12, 12, generator=gen)
    y = torch.randint(0, 10, (6,), generator=gen)
    grads = []
    for fused in (True, False):
        est = get_estimator(estimator) if estimator else None
        victim = Victim(model, ThreatModel("linf", 0.1), estimator=est)
        with fused_bptt(model, fused):
            grads.append(victim.grad(x, y)[1])
    assert grads[0].abs().sum() > 0
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("k,s,p,hw", [(3, 2, 1, (28, 28)), (2, 2, 0, (14, 14)), (3, 1, 1, (7, 9)), (2, 2, 0, (7, 7)),
                                      ((3, 2), (2, 1), (1, 0), (11, 8)), (3, None, 0, (10, 10))])
def test_window_max_pool_equals_the_library_pool_without_autograd(k, s, p, hw):
    from snnrobust.spiking.layers import MaxPool2d

    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 3, *hw, generator=g)
    x[0, 0, 0, :3] = float("nan")                    # NaN propagates as in the library kernel
    x[1, 1] = float("-inf")
    spikes = (torch.rand(6, 3, *hw, generator=g) > 0.7).float()
    pool, ref = MaxPool2d(k, s, p), torch.nn.MaxPool2d(k, s, p)
    for t in (x, spikes, x.contiguous(memory_format=torch.channels_last)):
        with torch.no_grad():
            out = pool(t)
        assert torch.equal(out.isnan(), ref(t).isnan())
        assert torch.equal(out.nan_to_num(), ref(t).nan_to_num())
    # with autograd it is the library layer: same gradient (to the same window element)
    a, b = spikes.clone().requires_grad_(), spikes.clone().requires_grad_()
    pool(a).sum().backward()
    ref(b).sum().backward()
    assert torch.equal(a.grad, b.grad)
