"""Memory-lean BPTT over time (snnrobust.models.time_segments): checkpointed segments of
timesteps give the unsegmented logits and gradients for every neuron setting and estimator,
keep fewer tensors, restore the model, and refuse what they cannot do exactly."""

import pytest
import torch
import torch.nn.functional as F
from conftest import make_tiny_sew

from snnrobust.errors import ConfigError
from snnrobust.evaluation import ThreatModel, Victim
from snnrobust.models import create_model
from snnrobust.models.time_segments import time_segments
from snnrobust.spiking import spiking_neurons

pytestmark = pytest.mark.usefixtures("one_thread")


def input_and_weight_grads(model, x, y):
    x = x.clone().requires_grad_(True)
    logits = model(x)
    grads = torch.autograd.grad(F.cross_entropy(logits, y), [x, *model.parameters()])
    return logits.detach(), grads[0], grads[1:]


@pytest.mark.parametrize("neuron, reset, detach", [("if", "soft", True), ("if", "hard", False),
                                                   ("lif", "soft", False), ("lif", "hard", True)])
@pytest.mark.parametrize("length", [1, 3, 7])
def test_segments_give_the_unsegmented_logits_and_gradients(neuron, reset, detach, length):
    model = make_tiny_sew(1, T=8, encoder="phase", neuron=neuron, reset=reset, detach_reset=detach,
                          threshold=0.3).eval()
    x, y = torch.rand(3, 1, 12, 12), torch.tensor([1, 4, 7])
    ref = input_and_weight_grads(model, x, y)
    with time_segments(model, length):
        got = input_and_weight_grads(model, x, y)
    assert model.time_segment is None                            # restored
    torch.testing.assert_close(got[0], ref[0], rtol=0, atol=1e-6)
    assert ref[1].abs().sum() > 0
    torch.testing.assert_close(got[1], ref[1], rtol=1e-5, atol=1e-7)
    for g, r in zip(got[2], ref[2]):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-6)
    # the neurons end where the unsegmented forward leaves them
    with time_segments(model, length):
        model(x.requires_grad_(True))
    seg_state = [n.v.detach().clone() for n in spiking_neurons(model)]
    model(x)
    for n, v in zip(spiking_neurons(model), seg_state):
        assert torch.equal(n.v.detach(), v)


@pytest.mark.parametrize("spec", ["bptt:triangle:1", "ste", "encoder-smooth", "rga", "hart", "bptr", "pdsg", "assg"])
def test_every_estimator_gives_the_same_input_gradient_through_segments(spec):
    """Time-local estimators run in segments; those whose backward mixes timesteps (averages
    over T) fall back to all T steps at once, so every estimator's gradient is unchanged."""
    model = make_tiny_sew(2, T=6, encoder="phase" if spec == "encoder-smooth" else "direct", threshold=0.3)
    x, y = torch.rand(4, 1, 12, 12), torch.arange(4)
    passes = []
    model.backbone.register_forward_pre_hook(lambda m, a: passes.append(a[0].shape[0]) if torch.is_grad_enabled()
                                             else None)
    victim = Victim(model, ThreatModel(), estimator=spec)
    _, ref = victim.grad(x, y)
    passes.clear()
    with time_segments(model, 4):
        _, got = victim.grad(x, y)
    assert ref.abs().sum() > 0
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-7)
    mixes_time = spec in ("rga", "hart", "bptr", "pdsg", "assg")
    assert sorted(passes) == ([6] if mixes_time else [2, 2, 4, 4])  # forward, then recomputed in backward


def test_segments_keep_fewer_tensors_and_are_recomputed_once():
    model = make_tiny_sew(0, T=16, encoder="direct", threshold=0.3).eval()
    x = torch.rand(8, 1, 12, 12, requires_grad=True)
    passes = []
    handle = model.backbone.register_forward_pre_hook(lambda m, a: passes.append(a[0].shape[0]))

    def saved_bytes(length):
        total = 0

        def pack(t):
            nonlocal total
            total += t.numel() * t.element_size()
            return t

        passes.clear()
        with time_segments(model, length), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = model(x)
        out.sum().backward()
        return total

    plain = saved_bytes(None)
    assert passes == [16]
    lean = saved_bytes(4)
    assert passes == [4, 4, 4, 4] * 2  # every segment once forward and once recomputed in backward
    assert lean < 0.3 * plain, (lean, plain)
    with torch.no_grad(), time_segments(model, 4):  # scoring passes run all T steps at once
        passes.clear()
        model(x)
    assert passes == [16]
    handle.remove()


def test_a_model_without_batchnorm_trains_through_segments_to_the_same_step():
    def step(length):
        torch.manual_seed(0)
        model = create_model("vgg5", T=6, width=4, image_size=12, in_channels=1, encoder="direct",
                             threshold=0.5).train()
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        x, y = torch.rand(6, 1, 12, 12), torch.arange(6)
        with time_segments(model, length):
            F.cross_entropy(model(x), y).backward()
        opt.step()
        return model.state_dict()

    ref, got = step(None), step(2)
    for k, v in ref.items():
        torch.testing.assert_close(got[k], v, rtol=1e-4, atol=1e-6)
    torch.manual_seed(0)
    start = create_model("vgg5", T=6, width=4, image_size=12, in_channels=1, encoder="direct")
    assert any(not torch.allclose(v, start.state_dict()[k]) for k, v in ref.items() if v.is_floating_point())


def test_what_segments_cannot_do_exactly_is_refused_in_one_line():
    model = make_tiny_sew(0, T=4).train()  # BatchNorm in training mode
    x = torch.rand(2, 1, 12, 12)
    with time_segments(model, 2), pytest.raises(ConfigError, match="BatchNorm in eval mode") as e:
        model(x.requires_grad_(True))
    assert "\n" not in str(e.value)
    model.eval()
    spiking_neurons(model)[0].record_membrane = True
    with time_segments(model, 2), pytest.raises(ConfigError, match="membrane"):
        model(x)
    for bad in (0, -2, 1.5, "4", True):
        with pytest.raises(ConfigError, match="positive number of timesteps"):
            with time_segments(model, bad):
                pass
    with pytest.raises(ConfigError, match="SpikingClassifier"):
        with time_segments(torch.nn.Linear(2, 2), 2):
            pass
