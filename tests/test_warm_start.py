"""Warm start (`train --init-weights`): the source's weights start the run, the source is recorded
and checked on resume, and bad sources are one-line errors."""

import pytest
import torch

from snnrobust.cli.main import main
from snnrobust.errors import CheckpointError, ConfigError
from snnrobust.training import TrainConfig, load_checkpoint, read_checkpoint, train
from snnrobust.training.checkpoint import save_checkpoint

TINY = {"name": "sew_resnet", "layers": [1, 1], "width": 4, "T": 2, "encoder": "phase", "stem_pool": True}


def cfg(tmp_path, out, **kw):
    base = dict(model=dict(TINY), dataset="mnist5k", epochs=1, batch_size=50, max_train_samples=100,
                eval_batch_size=500, out=str(tmp_path / out), seed=3)
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A one-epoch tiny model: the checkpoint warm starts begin from."""
    tmp = tmp_path_factory.mktemp("src")
    return train(cfg(tmp, "src"), progress=False).checkpoint


def test_warm_start_begins_from_the_source_weights(tmp_path, source, monkeypatch):
    """With the learning rate at its smallest the run's weights stay at the source's; a run from
    scratch with the same seed starts elsewhere. The checkpoint records where it started."""
    import snnrobust.training.trainer as trainer

    seen = {}
    real = trainer.make_optimizer

    def spy(c, model):  # the weights as the first step finds them
        seen["state"] = {k: v.clone() for k, v in model.state_dict().items()}
        return real(c, model)

    monkeypatch.setattr(trainer, "make_optimizer", spy)
    res = train(cfg(tmp_path, "warm", init_weights=str(source)), progress=False)
    src_state = read_checkpoint(source)["model_state"]
    assert all(torch.equal(seen["state"][k], v) for k, v in src_state.items())
    train(cfg(tmp_path, "cold"), progress=False)
    assert not all(torch.equal(seen["state"][k], v) for k, v in src_state.items())

    _, ck = load_checkpoint(res.checkpoint)
    step = ck["provenance"][-1]
    assert step["step"] == "warm-start" and step["init_weights"] == str(source)
    assert step["source_epochs"] == 1 and step["epochs_done"] == 1 and step["model_changes"] == {}
    assert len(step["sha256"]) == 64 and ck["train_config"]["init_weights"] == str(source)
    from snnrobust.report.sections import made_by

    assert made_by({"provenance": ck["provenance"]}) == "fine-tuned from a trained checkpoint (defense none, 1 epochs)"


def test_model_options_that_keep_shapes_may_change_and_are_recorded(tmp_path, source):
    res = train(cfg(tmp_path, "t4", init_weights=str(source), model={**TINY, "T": 4}), progress=False)
    step = read_checkpoint(res.checkpoint)["provenance"][-1]
    assert step["model_changes"] == {"T": [2, 4]}


def test_weights_that_do_not_fit_are_one_line_errors(tmp_path, source):
    with pytest.raises(CheckpointError, match=r"--init-weights .*do not fit .*width 4 -> 8"):
        train(cfg(tmp_path, "wide", init_weights=str(source), model={**TINY, "width": 8}), progress=False)
    with pytest.raises(CheckpointError, match="--init-weights: .* does not exist"):
        train(cfg(tmp_path, "none", init_weights=str(tmp_path / "missing.pt")), progress=False)
    assert not (tmp_path / "wide" / "checkpoint.pt").exists()


def test_source_that_needs_code_to_load_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    bad = tmp_path / "evil.pt"
    torch.save({"format": "snnrobust-checkpoint", "version": 1, "model_config": {}, "model_state": Evil()}, bad)
    with pytest.raises(CheckpointError, match="needs code to load"):
        train(cfg(tmp_path, "o", init_weights=str(bad)), progress=False)


def test_init_weights_and_init_from_exclude_each_other(tmp_path, source):
    with pytest.raises(ConfigError, match="exclude each other"):
        cfg(tmp_path, "o", init_weights=str(source), init_from=str(source))
    with pytest.raises(ConfigError, match="init_weights' must be a checkpoint path"):
        cfg(tmp_path, "o", init_weights="")


def test_resume_keeps_the_source_and_refuses_another(tmp_path, source):
    """A resumed warm start continues its own weights (not the source's again) and ends where an
    uninterrupted one ends; a different source file under the same --out is refused."""
    full = train(cfg(tmp_path, "full", epochs=2, init_weights=str(source)), progress=False)

    class Interrupt(Exception):
        pass

    def stop(epoch, metrics):
        raise Interrupt

    part = cfg(tmp_path, "part", epochs=2, init_weights=str(source))
    with pytest.raises(Interrupt):
        train(part, progress=False, on_epoch_end=stop)
    resumed = train(part, resume=True, progress=False)
    for k, v in full.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k
    assert read_checkpoint(resumed.checkpoint)["provenance"][-1]["epochs_done"] == 2

    other = tmp_path / "other.pt"
    ck = read_checkpoint(source)
    ck["model_state"] = {k: v + 1 if v.is_floating_point() else v for k, v in ck["model_state"].items()}
    save_checkpoint(other, {k: v for k, v in ck.items() if k not in ("format", "version")})
    with pytest.raises(CheckpointError, match="init_weights differ"):
        train(cfg(tmp_path, "part", epochs=2, init_weights=str(other)), resume=True, progress=False)


def test_cli_defaults_the_model_to_the_sources_and_eval_shows_provenance(tmp_path, source, capsys):
    out = tmp_path / "ft"
    assert main(["train", "--init-weights", str(source), "--epochs", "1", "--batch-size", "50",
                 "--max-train-samples", "100", "--defense", "fast-at", "-d", "eps=0.1", "--out", str(out)]) == 0
    ck = read_checkpoint(out / "checkpoint.pt")
    assert ck["model_config"]["width"] == 4 and ck["train_config"]["defense"]["name"] == "fast-at"
    assert f"warm start from {source}" in capsys.readouterr().out
    assert main(["eval", str(out / "checkpoint.pt"), ]) == 0
    text = capsys.readouterr().out
    assert "warm-start: init_weights=" in text and "defense=fast-at" in text and "source_defense=none" in text
    assert main(["train", "--init-weights", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert "--init-weights" in err and len(err.splitlines()) == 1
