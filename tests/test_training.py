"""Training: checkpoint round trip, exact resume, and one-line errors for bad input."""

import os

import pytest
import torch

from snnrobust.cli.main import main
from snnrobust.errors import CheckpointError, ConfigError
from snnrobust.training import TrainConfig, load_checkpoint, read_checkpoint, train

TINY = {"name": "sew_resnet", "layers": [1, 1], "width": 4, "T": 2, "encoder": "phase", "stem_pool": True}


def cfg(tmp_path, **kw):
    base = dict(model=dict(TINY), dataset="mnist5k", epochs=2, batch_size=50, max_train_samples=200,
                eval_batch_size=500, out=str(tmp_path / "run"), seed=3)
    base.update(kw)
    return TrainConfig(**base)


def test_checkpoint_round_trip(tmp_path):
    res = train(cfg(tmp_path, epochs=1), progress=False)
    model, ckpt = load_checkpoint(res.checkpoint)
    assert ckpt["epoch"] == 1 and ckpt["data"]["dataset"] == "mnist5k"
    assert ckpt["data"]["info"]["split"]["n_test"] == 1000
    for k, v in res.model.state_dict().items():
        assert torch.equal(v, model.state_dict()[k])
    x = torch.rand(4, 1, 28, 28)
    assert torch.equal(model(x), res.model.eval()(x))


def test_resume_equals_uninterrupted(tmp_path):
    full = train(cfg(tmp_path, out=str(tmp_path / "full")), progress=False)

    class Interrupt(Exception):
        pass

    def stop(epoch, metrics):
        raise Interrupt

    part = cfg(tmp_path, out=str(tmp_path / "part"))
    with pytest.raises(Interrupt):
        train(part, progress=False, on_epoch_end=stop)
    assert read_checkpoint(tmp_path / "part" / "checkpoint.pt")["epoch"] == 1
    resumed = train(part, resume=True, progress=False)
    for k, v in full.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k
    assert [m["test_accuracy"] for m in full.metrics] == [m["test_accuracy"] for m in resumed.metrics]


@pytest.mark.parametrize("lean", [{"fused_bptt": True}, {"recompute_blocks": True},
                                  {"fused_bptt": True, "recompute_blocks": True}, {"neuron_kernel": True}],
                         ids=["fused", "recompute", "both", "kernel"])
def test_memory_lean_training_takes_the_reference_steps(tmp_path, lean):
    """``fused_bptt`` (the neuron's time loop as one function), ``recompute_blocks`` (each
    block's activations recomputed in backward) and ``neuron_kernel`` (the fused loop compiled)
    train to the reference weights, up to float rounding, with the same BatchNorm statistics (the
    recomputation does not count a batch twice), and the stored config says which was used."""
    ref = train(cfg(tmp_path, epochs=1, out=str(tmp_path / "ref")), progress=False)
    lean_run = train(cfg(tmp_path, epochs=1, out=str(tmp_path / "lean"), **lean), progress=False)
    for k, v in ref.model.state_dict().items():
        if v.is_floating_point():
            torch.testing.assert_close(lean_run.model.state_dict()[k], v, rtol=1e-4, atol=1e-5)
        else:
            assert torch.equal(lean_run.model.state_dict()[k], v), k      # BatchNorm's batch counts
    init = train(cfg(tmp_path, epochs=1, out=str(tmp_path / "zero"), lr=1e-9), progress=False)
    moved = any(not torch.allclose(v, init.model.state_dict()[k]) for k, v in ref.model.state_dict().items()
                if v.is_floating_point())
    assert moved  # the comparison is of weights that trained
    stored = read_checkpoint(lean_run.checkpoint)["train_config"]
    assert all(stored[k] is True for k in lean)
    for key in lean:
        with pytest.raises(ConfigError, match=key):
            cfg(tmp_path, **{key: "yes"})


def test_training_in_time_segments_takes_the_reference_steps_and_refuses_batchnorm(tmp_path):
    """``time_segment`` trains a model without BatchNorm (VGG5, Sharmin et al. 2020's) to the
    unsegmented run's weights, and refuses a model with BatchNorm before training starts."""
    vgg = {"name": "vgg5", "width": 4, "T": 4, "encoder": "direct"}
    ref = train(cfg(tmp_path, epochs=1, model=dict(vgg), out=str(tmp_path / "ref")), progress=False)
    seg = train(cfg(tmp_path, epochs=1, model=dict(vgg), time_segment=2, out=str(tmp_path / "seg")), progress=False)
    init = train(cfg(tmp_path, epochs=1, model=dict(vgg), lr=1e-9, out=str(tmp_path / "zero")), progress=False)
    for k, v in ref.model.state_dict().items():
        torch.testing.assert_close(seg.model.state_dict()[k], v, rtol=1e-4, atol=1e-5)
    assert any(not torch.allclose(v, init.model.state_dict()[k]) for k, v in ref.model.state_dict().items())
    assert read_checkpoint(seg.checkpoint)["train_config"]["time_segment"] == 2
    with pytest.raises(ConfigError, match="without BatchNorm"):
        train(cfg(tmp_path, epochs=1, time_segment=2, out=str(tmp_path / "bn")), progress=False)
    assert not (tmp_path / "bn" / "checkpoint.pt").exists()
    for bad in (0, "2", 1.5):
        with pytest.raises(ConfigError, match="time_segment"):
            cfg(tmp_path, time_segment=bad)


def test_recomputed_blocks_keep_less_and_restore_the_model():
    from conftest import make_tiny_sew
    from snnrobust.models.recompute import recompute_blocks, recompute_units

    model = make_tiny_sew(1, T=4).train()
    units = recompute_units(model)
    assert len(units) == 2
    x = torch.rand(8, 1, 12, 12)

    def saved_bytes(on: bool) -> int:
        total = 0

        def pack(t):
            nonlocal total
            total += t.numel() * t.element_size()
            return t

        with recompute_blocks(model, on), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = model(x)
        out.sum().backward()
        return total

    plain, lean = saved_bytes(False), saved_bytes(True)
    assert lean < 0.7 * plain, (lean, plain)
    assert all("forward" not in u.__dict__ for u in units)       # the blocks are themselves again


def test_existing_run_is_not_overwritten(tmp_path):
    c = cfg(tmp_path, epochs=1)
    train(c, progress=False)
    before = (tmp_path / "run" / "checkpoint.pt").read_bytes()
    with pytest.raises(ConfigError, match="--resume"):
        train(c, progress=False)
    with pytest.raises(CheckpointError, match="lr"):
        train(cfg(tmp_path, epochs=1, lr=0.5), resume=True, progress=False)
    assert (tmp_path / "run" / "checkpoint.pt").read_bytes() == before


@pytest.mark.parametrize("content", [b"", b"garbage" * 10, None])
def test_corrupt_truncated_foreign_checkpoints(tmp_path, content):
    p = tmp_path / "bad.pt"
    if content is None:  # foreign: a valid torch file that is not ours
        torch.save({"state_dict": {"w": torch.zeros(2)}}, p)
    else:
        p.write_bytes(content)
    before = p.read_bytes()
    with pytest.raises(CheckpointError):
        load_checkpoint(p)
    assert p.read_bytes() == before


def test_truncated_real_checkpoint_and_code_execution(tmp_path):
    res = train(cfg(tmp_path, epochs=1), progress=False)
    data = res.checkpoint.read_bytes()
    t = tmp_path / "trunc.pt"
    t.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError):
        load_checkpoint(t)
    # a checkpoint that would run code when unpickled is refused, and the code does not run
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = tmp_path / "evil.pt"
    torch.save({"format": "snnrobust-checkpoint", "version": 1, "x": Evil()}, evil)
    with pytest.raises(CheckpointError):
        load_checkpoint(evil)
    assert not marker.exists()


def test_model_that_does_not_fit_dataset(tmp_path):
    with pytest.raises(ConfigError, match="in_channels"):
        train(cfg(tmp_path, model=dict(TINY, in_channels=3)), progress=False)
    with pytest.raises(ConfigError, match="num_classes"):
        train(cfg(tmp_path, model=dict(TINY, num_classes=100)), progress=False)
    assert not (tmp_path / "run").exists()


def test_weights_that_do_not_fit_config(tmp_path):
    res = train(cfg(tmp_path, epochs=1), progress=False)
    ckpt = read_checkpoint(res.checkpoint)
    ckpt["model_config"]["width"] = 8
    bad = tmp_path / "mismatch.pt"
    torch.save(ckpt, bad)
    with pytest.raises(CheckpointError, match="do not fit"):
        load_checkpoint(bad)


@pytest.mark.parametrize("bad", [
    {"epochs": 0}, {"lr": -1.0}, {"optimizer": "rmsprop"}, {"schedule": "linear"}, {"batch_size": 2.5},
    {"momentum": 1.5}, {"device": "tpu"}, {"model": {"width": 4}},
])
def test_out_of_range_config_values(tmp_path, bad):
    with pytest.raises(ConfigError):
        cfg(tmp_path, **bad)


def test_unknown_config_key_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="unknown config key"):
        TrainConfig.from_dict({"epochz": 3})
    y = tmp_path / "c.yaml"
    y.write_text("epochs: [1, 2\n")
    with pytest.raises(ConfigError, match="YAML"):
        TrainConfig.from_yaml(y)


def test_cli_errors_are_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    assert main(["eval", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err
    y = tmp_path / "c.yaml"
    y.write_text("epochz: 3\n")
    assert main(["train", "--config", str(y), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "unknown config key" in err and "\n" not in err
    assert main(["train", "-m", "width", "--out", str(tmp_path / "o")]) == 2


def test_cli_train_and_eval(tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["train", "--model", "sew_resnet", "-m", "layers=[1,1]", "-m", "width=4", "-m", "T=2",
                 "--epochs", "1", "--max-train-samples", "100", "--out", str(out), "--quiet"]) == 0
    assert main(["eval", str(out / "checkpoint.pt")]) == 0
    text = capsys.readouterr().out
    assert "clean accuracy" in text and "spike rate per layer" in text


def _tiny_train_argv(out, *extra):
    return ["train", "--model", "sew_resnet", "-m", "layers=[1,1]", "-m", "width=4", "-m", "T=2", "--epochs", "1",
            "--max-train-samples", "50", "--out", str(out), "--quiet", *extra]


@pytest.mark.parametrize("where", ["file", "below-file"])
def test_cli_train_out_that_is_a_file_is_one_line_error(tmp_path, capsys, where):
    f = tmp_path / "taken.pt"
    f.write_bytes(b"not a folder")
    out = f if where == "file" else f / "run"
    assert main(_tiny_train_argv(out)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --out") and "\n" not in err and "Traceback" not in err
    assert ("existing file" if where == "file" else "is a file") in err
    assert f.read_bytes() == b"not a folder"


def test_cli_resume_with_nothing_to_resume_says_so_first(tmp_path, capsys):
    out = tmp_path / "fresh"
    assert main(_tiny_train_argv(out, "--resume")) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"--resume: no checkpoint in {out} (the folder does not exist yet); starting from scratch"
    assert (out / "checkpoint.pt").is_file()
    # with a checkpoint there, --resume continues and says nothing about starting over
    assert main(_tiny_train_argv(out, "--resume")) == 0
    text = capsys.readouterr().out
    assert "starting from scratch" not in text and "nothing to do" not in text  # --quiet: only the result line
    assert text.startswith("test accuracy")
    (tmp_path / "empty").mkdir()
    assert main(_tiny_train_argv(tmp_path / "empty", "--resume")) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first == f"--resume: no checkpoint in {tmp_path / 'empty'}; starting from scratch"


def test_cli_switching_the_demo_encoder_drops_its_options():
    from snnrobust.cli.cmd_train import config_from_args
    from snnrobust.cli.main import build_parser

    parser = build_parser()
    args = parser.parse_args(["train", "-m", "encoder=direct"])
    cfg = config_from_args(args)
    assert cfg.model["encoder"] == "direct" and not cfg.model.get("encoder_options")
    # options given with the new encoder are kept, and the demo's stay with the demo's encoder
    args = parser.parse_args(["train", "-m", "encoder=poisson", "-m", "encoder_options={}"])
    assert config_from_args(args).model["encoder_options"] == {}
    args = parser.parse_args(["train", "-m", "T=4"])
    assert config_from_args(args).model["encoder_options"] == {"K": 8}
