"""ANN-to-SNN conversion (Sharmin et al. 2020's SNN-conv): thresholds, BN folding, fidelity,
provenance, the CLI end to end and every bad input (one-line error, nothing written)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from snnrobust.cli.main import main
from snnrobust.conversion import (
    ConversionConfig, convert_checkpoint, convert_model, fold_batchnorm, load_ann_source, trace_stages,
)
from snnrobust.errors import ConfigError
from snnrobust.io import file_sha256
from snnrobust.models import MODELS, create_model, register_model
from snnrobust.spiking.layers import SeqToBatch, seq_linear
from snnrobust.training import TrainConfig, load_checkpoint, read_checkpoint, save_checkpoint, train

pytestmark = pytest.mark.usefixtures("one_thread")

TINY_VGG = dict(width=4, in_channels=1, image_size=12, fc_hidden=16, num_classes=10)


# ----------------------------------------------------------------------------- test models
class _FunctionalReLU(nn.Module):
    """Two linear layers with F.relu between them: an activation the converter cannot see."""

    def __init__(self, cfg) -> None:
        super().__init__()
        n = cfg.in_channels * cfg.image_size ** 2
        self.flat = SeqToBatch(nn.Flatten())
        self.fc1, self.fc2 = seq_linear(n, 8, bias=False), seq_linear(8, cfg.num_classes, bias=False)

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(self.flat(x))))


def _mlp(cfg, hidden: int = 2, functional: bool = False):
    """flatten -> fc(hidden) -> act -> fc(hidden) -> act -> fc(classes), no bias."""
    if functional:
        return _FunctionalReLU(cfg)
    n = cfg.in_channels * cfg.image_size ** 2
    return nn.Sequential(SeqToBatch(nn.Flatten()), seq_linear(n, hidden, bias=False), cfg.activation(),
                         seq_linear(hidden, hidden, bias=False), cfg.activation(),
                         seq_linear(hidden, cfg.num_classes, bias=False))


@pytest.fixture
def mlp():
    """Registers the test-only architecture 'test_mlp' while the test runs."""
    register_model("test_mlp", "test-only MLP", default_width=1)(_mlp)
    yield
    MODELS.pop("test_mlp", None)


def _hand_mlp():
    """The two-layer network of the hand computation (see test_balance_matches_hand_computation)."""
    ann = create_model("test_mlp", in_channels=1, image_size=2, num_classes=2, spiking=False, T=1)
    fc1, fc2, fc3 = ann.backbone[1].module, ann.backbone[3].module, ann.backbone[5].module
    with torch.no_grad():
        fc1.weight.copy_(torch.tensor([[0.25, 0.25, 0.25, 0.25], [0.125, 0.125, 0.125, 0.125]]))
        fc2.weight.copy_(torch.tensor([[1.0, 2.0], [-1.0, 1.0]]))
        fc3.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    return ann.eval()


def _direct(method="balance", T=4, **kw):
    return ConversionConfig(method=method, T=T, encoder="direct", **kw)


# ----------------------------------------------------------------------------- thresholds
def test_balance_matches_hand_computation(mlp):
    """Images x1 = all ones, x2 = all 0.5 (2x2). Layer 1 current W1 x is constant: [1, 0.5]
    and [0.5, 0.25], so theta_1 = 1. Spikes of layer 1 (IF, soft reset, theta 1): for x1, unit A
    fires every step, unit B at steps 2, 4; layer 2's current W2 s is [1, -1] at step 1 and
    [3, 0] at step 2 -> theta_2 = 3 over T = 4 steps, but 1 when T = 1 (only step 1 is seen).
    The ANN's own layer-2 activations are [2, 0] and [1, 0]: percentile 100 gives lambda_2 = 2,
    theta_2 = lambda_2 / lambda_1 = 2 — a different rule, also checked."""
    ann = _hand_mlp()
    x = torch.stack([torch.ones(1, 2, 2), torch.full((1, 2, 2), 0.5)])
    conv = convert_model(ann, x, _direct(T=4))
    assert conv.thresholds == [1.0, 3.0]
    assert conv.model.config.thresholds == [1.0, 3.0]
    neurons = [m for m in conv.model.modules() if hasattr(m, "threshold")]
    assert [n.threshold for n in neurons] == [1.0, 3.0]
    # the readout weight carries lambda_2 = 1 * 3 so the SNN's logits are in ANN units
    assert torch.equal(conv.model.backbone[5].module.weight, 3.0 * ann.backbone[5].module.weight)
    assert convert_model(ann, x, _direct(T=1)).thresholds == [1.0, 1.0]
    pct = convert_model(ann, x, _direct(method="percentile", percentile=100.0))
    assert pct.thresholds == [1.0, 2.0] and pct.record["layer_scale"] == [1.0, 2.0]
    assert pct.record["percentile"] == 100.0 and conv.record["percentile"] is None


def _he_vgg(seed: int = 0, **kw):
    """A random tiny VGG5 ANN with He-initialized weights, so its logits are O(1) (PyTorch's
    default init shrinks them to ~1e-4 through five bias-free layers)."""
    torch.manual_seed(seed)
    ann = create_model("vgg5", spiking=False, T=1, **{**TINY_VGG, **kw})
    for m in ann.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    return ann.eval()


def test_converted_large_T_reproduces_ann_logits():
    """Stated tolerance: with constant (direct) input an IF neuron's rate is within 1/T of its
    target, so the error shrinks like 1/T. At T = 1000 on random images, max-normalized
    thresholds (percentile 100) reproduce every logit within 0.02 and the paper's balanced
    thresholds (larger, so coarser rates) within 0.06, where the logits reach ~1.5; at T = 4
    the error is as large as the logits."""
    ann = _he_vgg()
    calib = torch.rand(16, 1, 12, 12)
    x = calib[:8]
    with torch.no_grad():
        want = ann(x)
    assert want.abs().max() > 1.0  # a non-trivial comparison
    for method, tol in (("percentile", 0.02), ("balance", 0.06)):
        conv = convert_model(ann, calib, _direct(method=method, percentile=100.0, T=1000, chunk=100))
        with torch.no_grad():
            got = conv.model(x)  # the ordinary forward pass of the converted model
        assert (got - want).abs().max() < tol, method
        assert torch.equal(got.argmax(1), want.argmax(1))
    short = convert_model(ann, calib, _direct(method="percentile", percentile=100.0, T=4))
    with torch.no_grad():
        assert (short.model(x) - want).abs().max() > 0.5


def test_bn_folding_is_exact():
    torch.manual_seed(1)
    ann = create_model("vgg5", spiking=False, T=1, bn=True, **TINY_VGG)
    with torch.no_grad():  # non-trivial statistics and affine parameters
        for m in ann.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.2, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
    ann.eval()
    folded, stages = fold_batchnorm(ann)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert folded.config.arch["bn"] is False and folded.config.arch["bias"] is True
    x = torch.rand(16, 1, 12, 12)
    with torch.no_grad():
        assert torch.allclose(folded(x), ann(x), atol=1e-5, rtol=1e-5)
    assert sum(1 for s in trace_stages(ann) if s.bn) == 3 and all(s.bn is None for s in stages)
    conv = convert_model(ann, x, _direct(T=8))
    assert conv.record["bn_folded"] == 3 and conv.model.config.arch["bn"] is False


# ----------------------------------------------------------------------------- bad input
def test_unsupported_layers_name_the_layer(mlp):
    x = torch.rand(4, 1, 12, 12)
    maxpool = create_model("vgg5", spiking=False, T=1, pool="max", **TINY_VGG)
    with pytest.raises(ConfigError, match=r"'features\.2' \(MaxPool2d\).*max pooling"):
        convert_model(maxpool, x, _direct())
    sew = create_model("sew_resnet", layers=[1, 1], width=4, in_channels=1, image_size=12, spiking=False, T=1)
    with pytest.raises(ConfigError, match=r"'blocks\.0\.connect' \(Connect\).*residual"):
        convert_model(sew, x, _direct())
    functional = create_model("test_mlp", in_channels=1, image_size=12, spiking=False, T=1, functional=True)
    with pytest.raises(ConfigError, match=r"no nn\.ReLU module between layers 'fc1' and 'fc2'"):
        convert_model(functional, x, _direct())


def test_snn_and_bad_calibration_are_refused():
    torch.manual_seed(0)
    ann = create_model("vgg5", spiking=False, T=1, **TINY_VGG)
    snn = create_model("vgg5", **TINY_VGG)
    with pytest.raises(ConfigError, match="is an SNN"):
        convert_model(snn, torch.rand(4, 1, 12, 12), _direct())
    for bad in (torch.rand(4, 3, 12, 12), torch.rand(4, 1, 28, 28), torch.rand(1, 12, 12),
                torch.randint(0, 2, (4, 1, 12, 12))):
        with pytest.raises(ConfigError, match=r"calibration images must be a float tensor \[N, 1, 12, 12\]"):
            convert_model(ann, bad, _direct())
    with pytest.raises(ConfigError, match=r"pixels in \[0, 1\]"):
        convert_model(ann, torch.rand(4, 1, 12, 12) * 255, _direct())
    with pytest.raises(ConfigError, match="Poisson input encodes values in"):  # x^ = (x - 0.13) / 0.31 > 1
        mnist_norm = create_model("vgg5", spiking=False, T=1, normalize_mean=0.13, normalize_std=0.31, **TINY_VGG)
        convert_model(mnist_norm, torch.rand(4, 1, 12, 12), ConversionConfig(T=4))
    for bad_cfg in (dict(method="max"), dict(percentile=0), dict(T=0), dict(timestep_grid=[]),
                    dict(encoder="phase")):
        with pytest.raises(ConfigError):
            ConversionConfig(**bad_cfg)


def _cli_error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    return err


def test_cli_bad_checkpoints_write_nothing(tmp_path, capsys):
    data = {"dataset": "mnist5k", "split_seed": 0}
    mnist = dict(TINY_VGG, image_size=28)
    for name, model in (("maxpool", create_model("vgg5", spiking=False, T=1, pool="max", **mnist)),
                        ("snn", create_model("vgg5", **mnist))):
        path = tmp_path / f"{name}.pt"
        save_checkpoint(path, {"model_config": model.config.to_dict(), "model_state": model.state_dict(),
                               "data": data})
        out = tmp_path / f"out-{name}"
        err = _cli_error(capsys, ["convert", str(path), "--out", str(out), "--quiet"])
        assert ("MaxPool2d" in err) if name == "maxpool" else ("is an SNN" in err)
        assert not out.exists()


# ----------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def trained_ann(tmp_path_factory):
    """A tiny VGG5 ANN trained for one epoch on 400 mnist5k images (seconds)."""
    out = tmp_path_factory.mktemp("ann")
    cfg = TrainConfig(model=dict(name="vgg5", width=4, fc_hidden=32, normalize_mean=0.5, normalize_std=0.5),
                      method="ann", epochs=1, batch_size=50, max_train_samples=400, out=str(out))
    return train(cfg, progress=False).checkpoint


def test_cli_convert_end_to_end(trained_ann, tmp_path, capsys):
    out = tmp_path / "snn"
    assert main(["convert", str(trained_ann), "--out", str(out), "--T", "8", "--calibration-samples", "64",
                 "--eval-samples", "40", "--timestep-grid", "4,8", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "ANN accuracy" in printed and "thresholds per layer" in printed
    for f in ("checkpoint.pt", "conversion.json", "conversion.csv", "conversion.png"):
        assert (out / f).is_file()
    snn, ckpt = load_checkpoint(out / "checkpoint.pt")  # an ordinary checkpoint
    cfg = snn.config
    assert cfg.spiking and cfg.neuron == "if" and cfg.reset == "soft" and cfg.T == 8 and len(cfg.thresholds) == 5
    assert cfg.encoder == "poisson" and cfg.encoder_options == {"signed": True, "mean": 0.5, "std": 0.5}
    assert cfg.normalize_mean is None  # the signed Poisson code normalizes
    rec = ckpt["conversion"]
    assert (rec["method"], rec["T"], rec["calibration_samples"], rec["timestep_grid"]) == ("balance", 8, 64, [4, 8])
    src = ckpt["ann_source"]
    assert src["sha256"] == file_sha256(trained_ann) and src["checkpoint"] == str(trained_ann)
    assert [s["step"] for s in ckpt["provenance"]] == ["ann-training", "conversion"]
    assert ckpt["provenance"][0]["method"] == "ann" and ckpt["provenance"][0]["sha256"] == src["sha256"]
    ann, _ = load_checkpoint(trained_ann)
    rebuilt = load_ann_source(ckpt)
    x = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), ann(x)) and not rebuilt.config.spiking
    assert read_checkpoint(out / "checkpoint.pt")["model_config"]["thresholds"] == rec["thresholds"]
    # converting into the same folder again is refused without touching it
    before = (out / "checkpoint.pt").read_bytes()
    assert "already exists" in _cli_error(capsys, ["convert", str(trained_ann), "--out", str(out), "--quiet"])
    assert (out / "checkpoint.pt").read_bytes() == before
    # eval shows the provenance chain
    assert main(["eval", str(out / "checkpoint.pt"), "--batch-size", "500"]) == 0
    shown = capsys.readouterr().out
    assert "provenance" in shown and "ann-training:" in shown and "conversion: method=balance" in shown


def test_load_ann_source_needs_a_source(trained_ann):
    from snnrobust.errors import CheckpointError

    with pytest.raises(CheckpointError, match="no ANN source"):
        load_ann_source(read_checkpoint(trained_ann))


def test_report_on_api(trained_ann, tmp_path):
    res = convert_checkpoint(trained_ann, tmp_path / "p", ConversionConfig(
        method="percentile", T=8, encoder="direct", calibration_samples=32, eval_samples=20, timestep_grid=[2, 8]))
    rep = res.report
    assert rep.timesteps == [2, 8] and rep.n_images == 20 and len(rep.mae) == 2 and len(rep.mae[0]) == 5
    # more steps, smaller rate error in the first layer (its input is exact, so only time quantizes it)
    assert rep.mae[1][0] < rep.mae[0][0]
    assert res.conversion.record["percentile"] == 99.9
    assert "rel. MAE" in rep.table()
