"""ANN training (`train --method ann`): the ReLU twin with Sharmin et al. 2020's ANN recipe,
its defaults filled in only where not given, same checkpoints and exact resume as BPTT."""

import pytest
import torch

from snnrobust.cli.main import main
from snnrobust.errors import CheckpointError, ConfigError
from snnrobust.models import create_model
from snnrobust.spiking.neurons import SpikingNeuron
from snnrobust.training import TrainConfig, load_checkpoint, read_checkpoint, save_checkpoint, train

pytestmark = pytest.mark.usefixtures("one_thread")

# an SNN config (phase coding, T = 2): method ann must turn it into its ANN twin
TINY = {"name": "sew_resnet", "layers": [1, 1], "width": 4, "T": 2, "encoder": "phase", "stem_pool": True}
ANN_DEFAULTS = {"optimizer": "sgd", "lr": 1e-2, "momentum": 0.9, "weight_decay": 5e-4, "schedule": "step"}


def cfg(tmp_path, **kw):
    base = dict(model=dict(TINY), method="ann", dataset="mnist5k", epochs=2, batch_size=50, max_train_samples=100,
                eval_batch_size=500, out=str(tmp_path / "run"), seed=5)
    base.update(kw)
    return TrainConfig(**base)


def test_method_ann_defaults_fill_only_what_is_not_given():
    c = TrainConfig(model=dict(TINY), method="ann", lr=0.05, optimizer="adam", epochs=9)
    assert (c.lr, c.optimizer) == (0.05, "adam")  # given: kept
    assert (c.momentum, c.weight_decay, c.schedule, c.gamma) == (0.9, 5e-4, "step", 0.1)
    assert c.step_size == 3  # ceil(9 / 3): two decays over the run
    assert set(c.method_defaults) == {"momentum", "weight_decay", "schedule", "step_size", "gamma"}
    assert c.model == {**TINY, "spiking": False, "encoder": "direct", "encoder_options": {}, "T": 1}
    text = "\n".join(c.method_summary())
    assert "ANN defaults applied where not given: momentum 0.9, weight_decay 0.0005, schedule step" in text
    assert "kept your optimizer adam, lr 0.05" in text
    assert "T 1 (was 2)" in text and "encoder direct (was phase)" in text and "spiking false (was true)" in text
    # every default applied when nothing is given
    full = TrainConfig(model=dict(TINY), method="ann", epochs=10)
    assert {k: getattr(full, k) for k in ANN_DEFAULTS} == ANN_DEFAULTS and full.step_size == 4
    # a stored config round-trips unchanged: everything is given, nothing is filled in again
    again = TrainConfig.from_dict(c.to_dict())
    assert again == c and again.method_defaults == {} and again.method_model_changes == {}
    # BPTT keeps the long-standing defaults, and says nothing about them
    b = TrainConfig(model=dict(TINY))
    assert (b.method, b.optimizer, b.lr, b.weight_decay, b.schedule, b.step_size) == ("bptt", "adam", 1e-3, 0.0,
                                                                                       "cosine", 30)
    assert b.model == TINY and b.method_summary() == []
    with pytest.raises(ConfigError, match="'method' must be bptt or ann"):
        TrainConfig(method="snn")


def test_method_ann_writes_an_ann_checkpoint(tmp_path):
    res = train(cfg(tmp_path, epochs=1), progress=False)
    model, ckpt = load_checkpoint(res.checkpoint)
    mc = ckpt["model_config"]
    assert (mc["spiking"], mc["encoder"], mc["T"]) == (False, "direct", 1)
    assert not any(isinstance(m, SpikingNeuron) for m in model.modules())
    assert any(isinstance(m, torch.nn.ReLU) for m in model.modules())
    tc = ckpt["train_config"]
    assert tc["method"] == "ann" and {k: tc[k] for k in ANN_DEFAULTS} == ANN_DEFAULTS
    # SGD with momentum really ran: its optimizer state holds momentum buffers and the settings
    group = ckpt["optimizer_state"]["param_groups"][0]
    assert (group["momentum"], group["weight_decay"]) == (0.9, 5e-4)
    assert all("momentum_buffer" in s for s in ckpt["optimizer_state"]["state"].values())
    x = torch.rand(3, 1, 28, 28)
    assert torch.equal(model(x), res.model.eval()(x))


def test_method_ann_resume_equals_uninterrupted(tmp_path):
    full = train(cfg(tmp_path, out=str(tmp_path / "full")), progress=False)

    class Interrupt(Exception):
        pass

    def stop(epoch, metrics):
        raise Interrupt

    part = cfg(tmp_path, out=str(tmp_path / "part"))
    with pytest.raises(Interrupt):
        train(part, progress=False, on_epoch_end=stop)
    assert read_checkpoint(tmp_path / "part" / "checkpoint.pt")["epoch"] == 1
    # resumed from a config built again from scratch (defaults filled in the same way)
    resumed = train(cfg(tmp_path, out=str(tmp_path / "part")), resume=True, progress=False)
    for k, v in full.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k
    assert [m["lr"] for m in resumed.metrics] == [m["lr"] for m in full.metrics]
    assert [m["lr"] for m in full.metrics] == pytest.approx([1e-3, 1e-4])  # step decay every epoch (ceil(2/3))
    assert [m["test_accuracy"] for m in full.metrics] == [m["test_accuracy"] for m in resumed.metrics]


def _stored_run(tmp_path, train_config: dict) -> None:
    """A finished run's checkpoint in tmp_path/run with ``train_config`` as stored."""
    opts = {k: v for k, v in TINY.items() if k != "name"}
    model = create_model(TINY["name"], **opts, in_channels=1, image_size=28)
    save_checkpoint(tmp_path / "run" / "checkpoint.pt", {
        "epoch": 2, "model_config": model.config.to_dict(), "train_config": train_config,
        "model_state": model.state_dict(), "optimizer_state": torch.optim.Adam(model.parameters()).state_dict(),
        "metrics": []})


def test_checkpoint_from_before_methods_resumes_as_bptt(tmp_path):
    stored = cfg(tmp_path, method="bptt").to_dict()
    del stored["method"]  # written before TrainConfig had a method: it was BPTT training
    _stored_run(tmp_path, stored)
    done = train(cfg(tmp_path, method="bptt"), resume=True, progress=False)  # same run: nothing to do
    assert done.metrics == []
    with pytest.raises(CheckpointError, match="method"):
        train(cfg(tmp_path), resume=True, progress=False)


def test_cli_train_method_ann_says_what_it_applied_and_eval_says_ann(tmp_path, capsys):
    out = tmp_path / "cli"
    argv = ["train", "--method", "ann", "--model", "sew_resnet", "-m", "layers=[1,1]", "-m", "width=4", "-m", "T=4",
            "--lr", "0.02", "--epochs", "1", "--max-train-samples", "50", "--out", str(out), "--quiet"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "method ann: Sharmin et al. 2020's ANN defaults applied where not given: optimizer sgd, momentum 0.9, " \
           "weight_decay 0.0005, schedule step" in text
    assert "kept your lr 0.02" in text and "T 1 (was 4)" in text
    tc = read_checkpoint(out / "checkpoint.pt")["train_config"]
    assert (tc["method"], tc["lr"], tc["optimizer"]) == ("ann", 0.02, "sgd")
    assert main(["eval", str(out / "checkpoint.pt")]) == 0
    text = capsys.readouterr().out
    assert ", ANN, on mnist5k" in text and "spike rate per layer" not in text
    with pytest.raises(SystemExit):
        main(["train", "--method", "snn", "--out", str(tmp_path / "x")])
    assert "invalid choice" in capsys.readouterr().err
