"""Hybrid SNN-BP fine-tuning (`train --init-from`, Sharmin et al. 2020): it starts from exactly
the converted weights with thresholds x scale, LIF neurons and the threshold-relative surrogate,
uses Adam with amsgrad, keeps the ANN source and extends the provenance; bad sources are refused
with one line and nothing written."""

from __future__ import annotations

import pytest
import torch

from snnrobust.cli.main import main
from snnrobust.conversion import ConversionConfig, convert_checkpoint
from snnrobust.conversion.hybrid import hybrid_model
from snnrobust.errors import ConfigError
from snnrobust.spiking.neurons import LIFNode
from snnrobust.training import TrainConfig, read_checkpoint, train

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = dict(name="vgg5", width=4, fc_hidden=32, normalize_mean=0.5, normalize_std=0.5)


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """(ANN checkpoint, converted checkpoint): a tiny VGG5 ANN trained one epoch on 400 mnist5k
    images, converted by layer-wise balancing (T 8, 32 calibration images)."""
    root = tmp_path_factory.mktemp("hybrid")
    ann = train(TrainConfig(model=dict(TINY), method="ann", epochs=1, batch_size=50, max_train_samples=400,
                            out=str(root / "ann")), progress=False).checkpoint
    conv = convert_checkpoint(ann, root / "conv", ConversionConfig(T=8, calibration_samples=32, eval_samples=10,
                                                                   timestep_grid=[8]))
    return ann, conv.checkpoint


def test_hybrid_model_is_the_converted_model_rescaled(converted):
    _, conv = converted
    src = read_checkpoint(conv)
    h = hybrid_model(conv, {"name": "vgg5", "T": 4}, threshold_scale=0.7)
    state = h.model.state_dict()
    assert state.keys() == src["model_state"].keys()
    assert all(torch.equal(state[k], src["model_state"][k]) for k in state)
    want = [0.7 * t for t in src["model_config"]["thresholds"]]
    cfg = h.model.config
    assert cfg.thresholds == pytest.approx(want, rel=1e-12) and cfg.T == 4
    assert (cfg.neuron, cfg.leak, cfg.reset, cfg.surrogate, cfg.surrogate_relative) == \
        ("lif", 0.99, "soft", "triangle:1:0.3", True)
    neurons = [m for m in h.model.modules() if isinstance(m, LIFNode)]
    assert len(neurons) == len(want)
    for n, th in zip(neurons, want):
        assert n.threshold == pytest.approx(th) and n.leak == 0.99
        # seed 001's surrogate (0.3/th) max(0, 1 - |U/th - 1|) at U = th, th/2, 2 th, 0 (x = U - th)
        g = n.surrogate.grad(torch.tensor([0.0, -th / 2, th, -th]))
        assert torch.allclose(g, torch.tensor([0.3 / th, 0.15 / th, 0.0, 0.0]), rtol=1e-5)


def test_training_starts_from_the_converted_weights(converted, tmp_path, monkeypatch):
    from snnrobust.training import trainer

    _, conv = converted
    seen = {}
    real = trainer.make_optimizer

    def spy(cfg, model):  # the trainer builds the optimizer right after the model: its starting weights
        seen.update({k: v.detach().clone() for k, v in model.state_dict().items()})
        seen["_thresholds"] = list(model.config.thresholds)
        return real(cfg, model)

    monkeypatch.setattr(trainer, "make_optimizer", spy)
    cfg = TrainConfig(model={"name": "vgg5", "T": 4}, init_from=str(conv), epochs=1, batch_size=50,
                      max_train_samples=100, out=str(tmp_path / "h"))
    assert cfg.method == "hybrid" and (cfg.optimizer, cfg.amsgrad, cfg.lr, cfg.weight_decay) == \
        ("adam", True, 1e-4, 5e-4)
    res = train(cfg, progress=False)
    src = read_checkpoint(conv)
    assert all(torch.equal(seen[k], src["model_state"][k]) for k in src["model_state"])
    assert seen["_thresholds"] == pytest.approx([0.7 * t for t in src["model_config"]["thresholds"]])
    ck = read_checkpoint(res.checkpoint)
    group = ck["optimizer_state"]["param_groups"][0]
    assert group["amsgrad"] is True and group["initial_lr"] == pytest.approx(1e-4) and group["weight_decay"] == 5e-4
    assert ck["ann_source"]["sha256"] == src["ann_source"]["sha256"]
    assert all(torch.equal(ck["ann_source"]["model_state"][k], v) for k, v in src["ann_source"]["model_state"].items())
    steps = ck["provenance"]
    assert [s["step"] for s in steps] == ["ann-training", "conversion", "hybrid-fine-tuning"]
    assert steps[2]["threshold_scale"] == 0.7 and steps[2]["T"] == 4 and steps[2]["epochs_done"] == 1
    assert steps[2]["init_from"] == str(conv) and steps[2]["amsgrad"] is True
    assert ck["model_config"]["neuron"] == "lif" and ck["train_config"]["method"] == "hybrid"


def _error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    return err


def test_bad_init_from_writes_nothing(converted, tmp_path, capsys):
    ann, conv = converted
    out = tmp_path / "o"
    base = ["train", "--epochs", "1", "--out", str(out), "--quiet"]
    assert "not a converted SNN checkpoint" in _error(capsys, base + ["--init-from", str(ann)])
    assert "not 'vgg11'" in _error(capsys, base + ["--init-from", str(conv), "--model", "vgg11"])
    assert "width=4 but the requested model has width=8" in _error(
        capsys, base + ["--init-from", str(conv), "--model", "vgg5", "-m", "width=8"])
    assert "different architecture" in _error(capsys, base + ["--init-from", str(conv), "-m", "bn=true"])
    assert "method hybrid needs init_from" in _error(capsys, base + ["--init-from", str(conv), "--method", "ann"])
    assert not out.exists()
    with pytest.raises(ConfigError, match="threshold_scale"):
        TrainConfig(model={"name": "vgg5"}, init_from=str(conv), threshold_scale=0.0)
    with pytest.raises(ConfigError, match="amsgrad"):
        TrainConfig(model={"name": "vgg5"}, optimizer="sgd", amsgrad=True)


def test_cli_hybrid_and_eval_show_the_chain(converted, tmp_path, capsys):
    _, conv = converted
    out = tmp_path / "snn-bp"
    assert main(["train", "--init-from", str(conv), "-m", "T=4", "--leak", "0.95", "--threshold-scale", "0.5",
                 "--epochs", "1", "--max-train-samples", "100", "--batch-size", "50", "--out", str(out),
                 "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "method hybrid" in printed and "thresholds x 0.5" in printed
    ck = read_checkpoint(out / "checkpoint.pt")
    assert ck["model_config"]["leak"] == 0.95 and ck["provenance"][-1]["threshold_scale"] == 0.5
    assert main(["eval", str(out / "checkpoint.pt"), "--batch-size", "500"]) == 0
    shown = capsys.readouterr().out
    assert "1. ann-training:" in shown and "2. conversion:" in shown and "3. hybrid-fine-tuning:" in shown


def test_resume_accepts_the_same_start_named_from_another_folder(converted, tmp_path, monkeypatch):
    """A study resumed from another working directory names the converted checkpoint by
    another relative path: the same file (same SHA-256) resumes, another file is refused."""
    import shutil

    from snnrobust.errors import CheckpointError

    _, conv = converted
    (tmp_path / "a").mkdir()
    shutil.copy(conv, tmp_path / "a" / "conv.pt")
    out = str(tmp_path / "h")
    kw = dict(model={"name": "vgg5", "T": 4}, batch_size=50, max_train_samples=100, out=out)
    monkeypatch.chdir(tmp_path)
    train(TrainConfig(init_from="a/conv.pt", epochs=1, **kw), progress=False)
    monkeypatch.chdir(tmp_path / "a")
    res = train(TrainConfig(init_from="conv.pt", epochs=1, **kw), resume=True, progress=False)
    assert read_checkpoint(res.checkpoint)["epoch"] == 1
    other = read_checkpoint(conv)
    other["model_config"]["thresholds"] = [t * 2 for t in other["model_config"]["thresholds"]]
    torch.save(other, tmp_path / "a" / "other.pt")
    with pytest.raises(CheckpointError, match="init_from differ"):
        train(TrainConfig(init_from="other.pt", epochs=1, **kw), resume=True, progress=False)
