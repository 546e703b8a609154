"""Bring your own SNN (snnrobust.wrap): SpikingJelly 2.x and snnTorch 1.x models, trained here
for a few steps on made-up data, evaluated, attacked through swapped surrogates, and restored
exactly. Skips (with the reason) only when the framework is not installed."""

from __future__ import annotations

import importlib.util
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import snnrobust
from snnrobust.errors import ConfigError
from snnrobust.evaluation import ThreatModel, Victim, evaluate, get_budget
from snnrobust.foreign import ForeignModel

HAVE_SJ = importlib.util.find_spec("spikingjelly") is not None
HAVE_ST = importlib.util.find_spec("snntorch") is not None
need_sj = pytest.mark.skipif(not HAVE_SJ,
                             reason="spikingjelly not installed (pip install --no-deps spikingjelly loguru)")
need_st = pytest.mark.skipif(not HAVE_ST, reason="snntorch not installed (pip install 'snnrobust[snntorch]')")

T = 4


def made_up_data(n: int = 48, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Three classes of 8x8 images: a bright left, middle or right third, plus noise."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    x = 0.25 * torch.rand(n, 1, 8, 8, generator=g)
    for i in range(n):
        c = int(y[i])
        x[i, 0, :, 3 * c:3 * c + 2] += 0.7
    return x.clamp(0, 1), y


def train(model: ForeignModel, x: torch.Tensor, y: torch.Tensor, steps: int = 30) -> None:
    """A few Adam steps through the wrapped model (the framework's own surrogate)."""
    opt = torch.optim.Adam(model.model.parameters(), lr=0.02)
    model.train()
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    model.eval()


# ----------------------------------------------------------------------------- models
def sew_resnet():
    """A small SEW-ResNet (Fang et al. 2021) in SpikingJelly, multi-step: conv-BN-IF stem, one
    SEW block with ADD connect, average pool, linear readout."""
    from spikingjelly.activation_based import functional, layer, neuron, surrogate

    class SEWBlock(nn.Module):
        def __init__(self, c: int) -> None:
            super().__init__()
            self.conv1 = layer.Conv2d(c, c, 3, padding=1, bias=False)
            self.bn1 = layer.BatchNorm2d(c)
            self.sn1 = neuron.IFNode(surrogate_function=surrogate.ATan(), detach_reset=True)
            self.conv2 = layer.Conv2d(c, c, 3, padding=1, bias=False)
            self.bn2 = layer.BatchNorm2d(c)
            self.sn2 = neuron.IFNode(surrogate_function=surrogate.ATan(), detach_reset=True)

        def forward(self, s):
            out = self.sn2(self.bn2(self.conv2(self.sn1(self.bn1(self.conv1(s))))))
            return out + s  # ADD connect

    class SEWResNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Sequential(layer.Conv2d(1, 8, 3, padding=1, bias=False), layer.BatchNorm2d(8),
                                      neuron.IFNode(surrogate_function=surrogate.ATan(), detach_reset=True))
            self.block = SEWBlock(8)
            self.pool = layer.AdaptiveAvgPool2d((2, 2))
            self.fc = layer.Linear(32, 3)

        def forward(self, x_seq):  # [T, B, 1, 8, 8] -> [T, B, 3]
            s = self.pool(self.block(self.stem(x_seq)))
            return self.fc(s.flatten(2))

    torch.manual_seed(0)
    net = SEWResNet()
    functional.set_step_mode(net, "m")
    return net


def leaky_convnet():
    """A convolutional snnTorch network of Leaky neurons; its forward loops over the steps."""
    import snntorch as snn

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 8, 3, padding=1)
            self.lif1 = snn.Leaky(beta=0.9, init_hidden=True)
            self.pool = nn.AvgPool2d(2)
            self.fc = nn.Linear(8 * 4 * 4, 3)
            self.lif2 = snn.Leaky(beta=0.9, init_hidden=True, output=True)

        def forward(self, x):  # [B, 1, 8, 8] -> summed output spikes [B, 3]
            total = 0
            for _ in range(T):
                spk = self.pool(self.lif1(self.conv(x)))
                spk2, _ = self.lif2(self.fc(spk.flatten(1)))
                total = total + spk2
            return total

    torch.manual_seed(0)
    return Net()


def sj_wrapped():
    return snnrobust.wrap(sew_resnet(), time_steps=T)


def st_wrapped():
    return snnrobust.wrap(leaky_convnet())


# ----------------------------------------------------------------------------- helpers
def settle(model: ForeignModel) -> None:
    """One fixed forward pass, then the model's reset: runtime leftovers of the last forward
    (snnTorch keeps the last step's reset mask) become a function of the model alone."""
    model.eval()
    with torch.no_grad():
        model(made_up_data(2, seed=9)[0])
    model.reset_state()


def snapshot(model: nn.Module) -> dict:
    """Everything a neuron or layer holds: state_dict values, and per module every attribute
    (children by identity, tensors by value, the rest by equality)."""
    snap = {"state": {k: v.detach().clone() for k, v in model.state_dict().items()}, "modules": {}}
    for name, m in model.named_modules():
        attrs = {}
        for k, v in vars(m).items():
            if k == "_modules":
                attrs[k] = [(n, id(c)) for n, c in v.items()]
            elif k in ("_parameters", "_buffers"):
                attrs[k] = {n: (None if t is None else t.detach().clone()) for n, t in v.items()}
            elif k == "_memories":  # SpikingJelly's runtime state (checked after its reset)
                attrs[k] = {n: (t.detach().clone() if isinstance(t, torch.Tensor) else t) for n, t in v.items()}
            elif isinstance(v, torch.Tensor):
                attrs[k] = v.detach().clone()
            elif k.startswith("_forward") or k.startswith("_backward") or k.startswith("_state_dict"):
                attrs[k] = dict(v) if isinstance(v, dict) else v
            else:
                attrs[k] = v
        snap["modules"][name] = attrs
    return snap


def same(a, b) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape
                and a.dtype == b.dtype and torch.equal(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(u, v) for u, v in zip(a, b))
    return a is b or a == b


def assert_same(s1: dict, s2: dict) -> None:
    assert same(s1["state"], s2["state"])
    assert s1["modules"].keys() == s2["modules"].keys()
    for name in s1["modules"]:
        a, b = s1["modules"][name], s2["modules"][name]
        assert a.keys() == b.keys(), (name, set(a) ^ set(b))
        for k in a:
            assert same(a[k], b[k]), (name, k)


def native_grad(model: ForeignModel, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The framework's own autograd gradient of the summed CE loss, without snnrobust."""
    net = model.model
    xx = x.clone().requires_grad_(True)
    net.eval()
    if model.framework == "spikingjelly":
        from spikingjelly.activation_based import functional

        functional.reset_net(net)
        out = net(xx.unsqueeze(0).repeat(T, 1, 1, 1, 1)).mean(0)
    else:
        import snntorch.utils

        snntorch.utils.reset(net)
        out = net(xx)
    (g,) = torch.autograd.grad(F.cross_entropy(out, y, reduction="sum"), xx)
    return g


# ----------------------------------------------------------------------------- end to end
@pytest.mark.parametrize("framework", [pytest.param("spikingjelly", marks=need_sj),
                                       pytest.param("snntorch", marks=need_st)])
def test_reliable_suite_end_to_end(framework):
    x, y = made_up_data()
    model = sj_wrapped() if framework == "spikingjelly" else st_wrapped()
    train(model, x, y)
    settle(model)
    before = snapshot(model.model)
    budget = get_budget("quick").override(steps=5, target_classes=1, square_queries=20, transfer_steps=2, diag_n=8,
                                          diag_steps=3, diag_more_steps=6, diag_noise_draws=2)
    res = evaluate(model, x[:16], y[:16], suite="reliable", budget=budget, threat=ThreatModel(eps=0.3),
                   eps_sweep=[], progress=False, batch_size=16)
    assert res.clean.value >= 0.5  # it learnt something in 30 steps
    assert res.worst_case.robust_accuracy.value <= res.clean.value
    assert res.diagnostics and {d.status for d in res.diagnostics} <= {"PASS", "WARN", "SKIP"}
    assert res.model["config"]["framework"] == framework
    ests = res.protocol["estimators"]
    assert "bptt:atan:2" in ests and "bptt:atan:0.5" in ests  # own surrogate and 4x wider, translated
    if framework == "spikingjelly":  # layer estimators run through the adapter
        assert "rga" in ests and "bptr" in ests
    else:  # not applicable to per-step neurons: left out, and the result says so
        assert "rga" not in ests and "bptr" not in ests
        assert any("estimator rga left out: not applicable to snnTorch Leaky" in n for n in res.notes)
    settle(model)
    assert_same(before, snapshot(model.model))


# ----------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("framework", [pytest.param("spikingjelly", marks=need_sj),
                                       pytest.param("snntorch", marks=need_st)])
@pytest.mark.parametrize("estimator", ["bptt", "bptt:atan:2"])
def test_input_gradient_equals_framework_autograd(framework, estimator):
    x, y = made_up_data(12, seed=1)
    model = sj_wrapped() if framework == "spikingjelly" else st_wrapped()
    train(model, x, y, steps=5)
    g0 = native_grad(model, x, y)
    _, g = Victim(model, estimator=estimator).grad(x, y)
    assert g0.abs().sum() > 0
    torch.testing.assert_close(g, g0, rtol=1e-5, atol=1e-7)
    # a different surrogate gives a different gradient (the swap reaches the neurons)
    _, g2 = Victim(model, estimator="bptt:triangle:0.3").grad(x, y)
    assert not torch.allclose(g2, g0)


@need_sj
@pytest.mark.parametrize("name,alpha", [("Sigmoid", 4.0), ("ATan", 2.0), ("PiecewiseExp", 2.0),
                                        ("PiecewiseQuadratic", 1.0), ("SuperSpike", 1.5), ("SoftSign", 2.0),
                                        ("Erf", 2.0)])
def test_spikingjelly_surrogate_translation_has_the_same_derivative(name, alpha):
    from spikingjelly.activation_based import surrogate

    from snnrobust.foreign.spikingjelly import translate

    fn = getattr(surrogate, name)(alpha=alpha)
    x = torch.linspace(-2, 2, 401, dtype=torch.float64).requires_grad_(True)
    (g_sj,) = torch.autograd.grad(fn(x).sum(), x)
    ours = translate(fn, "test")
    assert ours.native is fn
    torch.testing.assert_close(ours.grad(x.detach()), g_sj, rtol=1e-6, atol=1e-9)


@need_sj
def test_layer_estimators_keep_spikingjelly_forward_exact():
    x, y = made_up_data(12, seed=2)
    model = sj_wrapped()
    train(model, x, y, steps=5)
    ref = Victim(model).logits(x)
    for est in ("hart", "rga", "bptr", "pdsg", "assg"):
        v = Victim(model, estimator=est)
        with v.attack_mode():
            out = v.module()(x)
        assert torch.equal(out, ref), est
        _, g = v.grad(x, y)
        assert torch.isfinite(g).all() and g.abs().sum() > 0, est


# ----------------------------------------------------------------------------- restore
@pytest.mark.parametrize("framework", [pytest.param("spikingjelly", marks=need_sj),
                                       pytest.param("snntorch", marks=need_st)])
def test_surrogate_swap_restores_bit_for_bit_also_after_an_exception(framework):
    x, y = made_up_data(8)
    model = sj_wrapped() if framework == "spikingjelly" else st_wrapped()
    train(model, x, y, steps=3)
    settle(model)
    before = snapshot(model.model)
    natives = [n.surrogate.native for n in model.neurons]
    v = Victim(model, estimator="bptt:triangle:0.5")
    with pytest.raises(RuntimeError, match="boom"):
        with v.attack_mode():
            swapped = [n.target.surrogate_function if framework == "spikingjelly" else n.target.spike_grad
                       for n in model.neurons]
            assert all(s is not nat for s, nat in zip(swapped, natives))  # really swapped inside
            v.module()(x).sum().backward()
            raise RuntimeError("boom")
    settle(model)
    assert_same(before, snapshot(model.model))
    assert [n.surrogate.native for n in model.neurons] == natives
    if framework == "spikingjelly":  # a layer estimator's forward override is removed too
        with pytest.raises(RuntimeError, match="boom"):
            with Victim(model, estimator="hart").attack_mode():
                assert all("forward" in n.target.__dict__ for n in model.neurons)
                raise RuntimeError("boom")
        settle(model)
        assert_same(before, snapshot(model.model))


# ----------------------------------------------------------------------------- encoders
@need_sj
def test_non_differentiable_encoder_gets_straight_through_and_is_stated():
    model = snnrobust.wrap(sew_resnet(), time_steps=T, encoder=lambda x: (torch.rand(T, *x.shape) < x).float())
    assert model.stochastic  # probed: two draws differ
    x, y = made_up_data(6)
    v = Victim(model)
    assert v.eot == 10  # EOT for a random encoder
    _, g = Victim(model, eot=2).grad(x, y)
    assert g.abs().sum() > 0
    assert model.config.encoder_backward.startswith("straight-through")


# ----------------------------------------------------------------------------- errors
@need_st
def test_unsupported_snntorch_neuron_and_surrogate_are_one_line_errors():
    import snntorch as snn
    from snntorch import surrogate

    with pytest.raises(ConfigError, match="unsupported snnTorch neuron type Synaptic") as e:
        snnrobust.wrap(nn.Sequential(nn.Linear(4, 3), snn.Synaptic(alpha=0.9, beta=0.8, init_hidden=True)))
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="unsupported snnTorch spike_grad triangular"):
        snnrobust.wrap(nn.Sequential(nn.Linear(4, 3), snn.Leaky(beta=0.9, init_hidden=True,
                                                                spike_grad=surrogate.triangular())))


@need_st
def test_estimator_not_applicable_to_snntorch_is_a_one_line_error_when_asked_for():
    x, y = made_up_data(4)
    model = st_wrapped()
    with pytest.raises(ConfigError, match="estimator hart is not applicable to snnTorch Leaky"):
        Victim(model, estimator="hart").grad(x, y)


@need_sj
def test_unsupported_spikingjelly_cases_are_one_line_errors(monkeypatch):
    from spikingjelly.activation_based import functional, neuron, surrogate

    with pytest.raises(ConfigError, match="unsupported SpikingJelly surrogate Rect"):
        snnrobust.wrap(nn.Sequential(nn.Linear(4, 3), neuron.IFNode(surrogate_function=surrogate.Rect())))
    single = nn.Sequential(nn.Linear(4, 3), neuron.IFNode(surrogate_function=surrogate.ATan()))
    with pytest.raises(ConfigError, match="single-step mode"):
        snnrobust.wrap(single, time_steps=T, input_format="multi-step")
    model = snnrobust.wrap(single, time_steps=T)  # auto: single-step, layer estimators left out with the reason
    assert model.input_format == "single-step" and "single-step mode" in model.estimator_limits["hart"]
    functional.set_step_mode(single, "m")
    with pytest.raises(ConfigError, match="needs time_steps"):
        snnrobust.wrap(single, input_format="multi-step")
    from importlib import metadata

    real = metadata.version
    monkeypatch.setattr(metadata, "version", lambda name: "0.0.0.0.14" if name == "spikingjelly" else real(name))
    with pytest.raises(ConfigError, match=r"unsupported spikingjelly version 0\.0\.0\.0\.14; snnrobust supports "
                                          r"spikingjelly 2\.x"):
        snnrobust.wrap(single, time_steps=T)

    def missing(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "version", missing)
    with pytest.raises(ConfigError, match="spikingjelly is not installed; run: pip install --no-deps spikingjelly"):
        snnrobust.wrap(single, time_steps=T)


def test_plain_torch_model_and_bad_options():
    class Tiny(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(64, 3)

        def forward(self, x):
            return self.fc(x.flatten(1))

    model = snnrobust.wrap(Tiny())
    assert model.framework == "torch" and model.input_format == "image"
    assert "hart" in model.estimator_limits and "bptt" not in model.estimator_limits
    x, y = made_up_data(4)
    assert model(x).shape == (4, 3)
    with pytest.raises(ConfigError, match="unknown framework"):
        snnrobust.wrap(Tiny(), framework="brian2")
    with pytest.raises(ConfigError, match="needs input_format='multi-step' or 'single-step'"):
        snnrobust.wrap(Tiny(), time_steps=4)
    with pytest.raises(ConfigError, match="framework=snntorch given, but the model has no snntorch modules"):
        snnrobust.wrap(Tiny(), framework="snntorch")

    class Pair(Tiny):
        def forward(self, x):
            return self.fc(x.flatten(1)), None

    with pytest.raises(ConfigError, match="returned a tuple"):
        snnrobust.wrap(Pair())(x)
    assert math.isfinite(float(model(x).sum()))
    # a surrogate swap on a model whose neurons snnrobust cannot see is refused, not a silent no-op
    from snnrobust.evaluation import ThreatModel, Victim

    for spec in ("bptt:atan:4", "ste", "rga", "hart:1.0"):
        with pytest.raises(ConfigError, match="has none snnrobust can see"):
            Victim(model, ThreatModel(eps=0.1), estimator=spec).grad(x, y)
    assert Victim(model, ThreatModel(eps=0.1), estimator="bptt").grad(x, y)[1].abs().sum() > 0


# ----------------------------------------------------------------------------- CLI
MODEL_FILE = '''
import torch
from torch import nn
import snntorch as snn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(28 * 28, 10)
        self.lif = snn.Leaky(beta=0.9, init_hidden=True, output=True)

    def forward(self, x):
        total = 0
        for _ in range(3):
            spk, mem = self.lif(self.fc(x.flatten(1)))
            total = total + mem
        return total


def build():
    return Net()
'''


@need_st
def test_cli_attack_with_model_file_and_its_one_line_errors(tmp_path, capsys):
    from snnrobust.cli.main import main

    (tmp_path / "my_model.py").write_text(MODEL_FILE)
    torch.manual_seed(0)
    ns: dict = {}
    exec(MODEL_FILE, ns)
    torch.save(ns["build"]().state_dict(), tmp_path / "w.pt")
    out = tmp_path / "res.json"
    base = ["attack", "--model-file", f"{tmp_path / 'my_model.py'}:build", "--weights", str(tmp_path / "w.pt"),
            "--dataset", "mnist5k", "--attack", "fgsm", "--eps", "0.1", "--n", "8", "--no-progress"]
    assert main(base + ["--out", str(out)]) == 0
    import json

    res = json.loads(out.read_text())
    assert res["model"]["config"]["framework"] == "snntorch" and res["model"]["model_file"].endswith(":build")

    def error_of(argv):
        capsys.readouterr()
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
        return err

    assert "no such file" in error_of(["attack", "--model-file", f"{tmp_path / 'nope.py'}:build", "--dataset",
                                       "mnist5k", "--attack", "fgsm"])
    assert "has no function 'make'" in error_of(["attack", "--model-file", f"{tmp_path / 'my_model.py'}:make",
                                                 "--dataset", "mnist5k", "--attack", "fgsm"])
    torch.save({"fc.weight": torch.zeros(3, 3)}, tmp_path / "bad.pt")
    assert "does not match the model" in error_of(base[:4] + [str(tmp_path / "bad.pt")] + base[5:])
    torch.save({"fn": print}, tmp_path / "code.pt")  # a pickle that would run code
    assert "not a weights-only state_dict" in error_of(base[:4] + [str(tmp_path / "code.pt")] + base[5:])
    assert "unknown framework" in error_of(base + ["--framework", "brian2"])
    # eval and the gradient analysis command take the same model options
    capsys.readouterr()
    assert main(["eval", "--model-file", f"{tmp_path / 'my_model.py'}:build", "--weights", str(tmp_path / "w.pt"),
                 "--dataset", "mnist5k", "--json"]) == 0
    ev = json.loads(capsys.readouterr().out)
    assert ev["n"] == 1000 and 0.0 <= ev["accuracy"] <= 1.0 and ev["model"]["framework"] == "snntorch"
    assert "does not match the model" in error_of(["eval", "--model-file", f"{tmp_path / 'my_model.py'}:build",
                                                   "--weights", str(tmp_path / "bad.pt"), "--dataset", "mnist5k"])
    gout = tmp_path / "g.json"
    assert main(["gradients", "--model-file", f"{tmp_path / 'my_model.py'}:build", "--weights",
                 str(tmp_path / "w.pt"), "--dataset", "mnist5k", "--n", "4", "--out", str(gout)]) == 0
    rep = json.loads(gout.read_text())
    assert rep["n_samples"] == 4 and any(r["kind"] == "linear" for r in rep["ops"])
    assert "no function 'make'" in error_of(["gradients", "--model-file", f"{tmp_path / 'my_model.py'}:make",
                                             "--dataset", "mnist5k"])


@pytest.mark.parametrize("framework", [pytest.param("spikingjelly", marks=need_sj),
                                       pytest.param("snntorch", marks=need_st)])
def test_gradient_sparsity_analysis_on_a_wrapped_model(framework):
    from snnrobust.analysis.sparsity import op_gradient_stats

    x, y = made_up_data(8)
    model = sj_wrapped() if framework == "spikingjelly" else st_wrapped()
    settle(model)
    before = snapshot(model.model)
    rep = op_gradient_stats(model, x, y, estimator="bptt:atan:0.5")
    kinds = {r.kind for r in rep.rows}
    assert {"conv", "linear"} <= kinds and rep.n_samples == 8 and rep.input_norm > 0
    assert rep.model["framework"] == framework
    settle(model)
    assert_same(before, snapshot(model.model))
