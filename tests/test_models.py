"""Every registered model builds and runs forward and backward at T=2, as SNN and ANN twin."""

import pytest
import torch

from snnrobust.errors import ConfigError
from snnrobust.models import ann_twin, build_from_config, create_model, list_models, model_from_dict
from snnrobust.spiking import SpikingNeuron

NAMES = [e.name for e in list_models()]


def small(name):
    return dict(in_channels=1, image_size=28, width=4, T=2, num_classes=10)


@pytest.mark.parametrize("spiking", [True, False])
@pytest.mark.parametrize("name", NAMES)
def test_forward_backward(name, spiking):
    torch.manual_seed(0)
    m = create_model(name, spiking=spiking, encoder="phase" if spiking else "direct", **small(name))
    x = torch.rand(2, 1, 28, 28, requires_grad=True)
    out = m(x)
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    out.sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape
    grads = [p.grad for p in m.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    has_neurons = any(isinstance(mod, SpikingNeuron) for mod in m.modules())
    assert has_neurons == spiking
    if not spiking:
        assert any(isinstance(mod, torch.nn.ReLU) for mod in m.modules())


def test_cifar_sizes_and_imagenet_stem():
    m = create_model("sew_resnet18", width=8, T=2, stem="imagenet", pool="avg", num_classes=100)
    assert m(torch.rand(1, 3, 32, 32)).shape == (1, 100)
    pools = [mod for mod in m.modules() if isinstance(mod, torch.nn.AvgPool2d)]
    assert len(pools) == 1  # the stem pool follows the switch
    m2 = create_model("sew_resnet18", width=8, T=2, stem="imagenet", pool="max")
    assert any(isinstance(mod, torch.nn.MaxPool2d) for mod in m2.modules())


@pytest.mark.parametrize("connect", ["ADD", "AND", "IAND"])
def test_sew_connect_functions(connect, tiny_sew):
    m = tiny_sew(connect=connect)
    assert m(torch.rand(2, 1, 12, 12)).shape == (2, 10)


def test_ann_twin_and_rebuild_from_config():
    m = create_model("vgg5", width=4, in_channels=1, image_size=28, T=3, encoder="poisson")
    twin = build_from_config(ann_twin(m.config))
    assert not twin.spiking and twin.config.T == 1 and twin.config.encoder == "direct"
    # same parameter shapes: the twin differs only in its activations
    assert [p.shape for p in m.parameters()] == [p.shape for p in twin.parameters()]
    again = model_from_dict(m.config.to_dict())
    again.load_state_dict(m.state_dict())


def test_lif_options_reach_neurons():
    m = create_model("vgg5", width=4, in_channels=1, image_size=28, T=2, neuron="lif", leak=0.8, reset="soft",
                     threshold=0.5, surrogate="triangle:0.5:0.3")
    n = next(mod for mod in m.modules() if isinstance(mod, SpikingNeuron))
    assert (n.leak, n.reset_mode, n.threshold) == (0.8, "soft", 0.5)
    assert (n.surrogate.kind, n.surrogate.scale) == ("triangle", 0.3)


@pytest.mark.parametrize("bad", [
    dict(name="nope"),
    dict(name="vgg5", colour="red"),
    dict(name="vgg5", connect="ADD"),  # a SEW option on VGG
    dict(name="sew_resnet", connect="OR"),
    dict(name="sew_resnet", pool="median"),
    dict(name="sew_resnet", T=0),
    dict(name="sew_resnet", neuron="if", leak=0.5),
    dict(name="sew_resnet18", layers=[1, 1]),  # sew_resnet18 fixes its layers
    dict(name="wrn16", depth=15),
    dict(name="sew_resnet", encoder="morse"),
])
def test_bad_options_give_config_error(bad):
    bad = dict(bad)
    with pytest.raises(ConfigError):
        create_model(bad.pop("name"), **bad)


def test_wrong_input_shape_is_clear(tiny_sew):
    m = tiny_sew()
    with pytest.raises(ConfigError, match="in_channels"):
        m(torch.rand(2, 3, 12, 12))
