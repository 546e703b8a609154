"""Studies: recipes load, a study killed midway resumes without recomputation or duplicates."""

import json

import pytest

from snnrobust.errors import ConfigError
from snnrobust.store import ResultsStore
from snnrobust.studies import list_recipes, load_recipe, run_study
import snnrobust.studies.runner as runner

RECIPE = """
name: tiny
seed: "000"
title: tiny study
description: a tiny study for tests
claims:
  - id: c
    seed: "000"
    text: "avg raises clean accuracy"
    checks:
      - {metric: clean_accuracy, expect: greater, a: avg-pool, b: max-pool}
sizes:
  quick:
    dataset: mnist5k
    train: {epochs: 1, batch_size: 50, max_train_samples: 100, seed: 0}
    model: {name: sew_resnet, layers: [1, 1], width: 4, T: 2, encoder: phase, stem_pool: true}
    variants:
      - {label: max-pool, model: {pool: max}}
      - {label: avg-pool, model: {pool: avg}}
    eval: {samples: 12, eps: 0.1, eps_sweep: [], batch_size: 12}
    protocols:
      - {name: fgsm, attack: fgsm, weak: true}
      - {name: pgd, attack: pgd, options: {steps: 3}}
    sparsity: {samples: 6, sources: [attack]}
"""


def test_builtin_recipes_load():
    names = {r.name for r in list_recipes()}
    assert {"pooling-tradeoff", "encoding-leak-timesteps"} <= names
    for r in list_recipes():
        for size in ("quick", "full"):
            spec = r.size(size)
            assert spec["variants"] and spec["protocols"]
    with pytest.raises(ConfigError):
        load_recipe("no-such-study")


def test_full_size_models_build():
    # the GPU-size recipes must at least build their models (checked to start)
    from snnrobust.data.registry import DATASETS
    from snnrobust.training.config import TrainConfig
    from snnrobust.training.trainer import build_model_for

    for r in list_recipes():
        spec = r.size("full")
        entry = DATASETS[spec["dataset"]]
        info = type("I", (), dict(name=entry.name, in_channels=entry.in_channels, image_size=entry.image_size,
                                  num_classes=entry.num_classes))
        for v in spec["variants"][:2]:
            cfg = TrainConfig.from_dict({**spec["train"], **(v.get("train") or {}),
                                         "model": {**spec["model"], **(v.get("model") or {})}})
            model = build_model_for(cfg, info)
            assert model.config.num_classes == entry.num_classes


def test_killed_study_resumes_without_recomputation(tmp_path, monkeypatch):
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(RECIPE)
    out = tmp_path / "study"
    calls = []
    real = runner.evaluate

    def counting(*a, **kw):
        calls.append(kw.get("attack"))
        if len(calls) == 3:
            raise KeyboardInterrupt  # killed during the third evaluation
        return real(*a, **kw)

    monkeypatch.setattr(runner, "evaluate", counting)
    with pytest.raises(KeyboardInterrupt):
        run_study(str(recipe), "quick", out, progress=False, log=lambda s: None)
    with ResultsStore(out) as st:
        assert len(st.records(kind="evaluation")) == 2
    calls.clear()
    monkeypatch.setattr(runner, "evaluate", real)
    monkeypatch.setattr(runner, "evaluate", lambda *a, **kw: (calls.append(kw.get("attack")), real(*a, **kw))[1])
    paths = run_study(str(recipe), "quick", out, progress=False, log=lambda s: None)
    assert len(calls) == 2  # only the two evaluations not finished before the kill
    with ResultsStore(out) as st:
        evs = st.records(kind="evaluation")
        assert len(evs) == 4 and len({(r.checkpoint_hash, r.config_hash) for r in evs}) == 4
        assert len(st.records(kind="sparsity")) == 2
    calls.clear()
    run_study(str(recipe), "quick", out, progress=False, log=lambda s: None)
    assert calls == []  # a finished study recomputes nothing
    html = paths["html"].read_text() if hasattr(paths["html"], "read_text") else open(paths["html"]).read()
    assert "<html" in html.lower() and "max-pool" in html and "avg-pool" in html
    study = json.loads((out / "study.json").read_text())
    assert {e["protocol"] for e in study["evaluations"]} == {"fgsm", "pgd"}


def test_full_study_check_builds_trains_and_attacks_every_variant(tmp_path, monkeypatch, capsys):
    # `study --size full --check` on CIFAR-10 in its real on-disk format (a tiny fake copy)
    from cifar_files import make_cifar10
    from snnrobust.cli.main import main
    from snnrobust.studies.preflight import check_study, format_checks

    make_cifar10(tmp_path / "cifar-10-batches-py", style="2", n=3)
    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    rows = check_study("pooling-tradeoff", "full", str(tmp_path), "cpu", batch=2, log=lambda s: None)
    assert [r.label for r in rows] == ["max-pool", "avg-pool"]
    for r in rows:
        assert r.parameters > 10_000_000 and r.step_images == 2 and r.step_s > 0 and r.epochs == 100
        assert r.epoch_hours == pytest.approx(r.step_s / 2 * 15 / 3600)  # 15 = the fake train split
        assert set(r.attacks) == {"seed-luu2025", "reliable"} and r.attacks["seed-luu2025"] == 2
        assert r.attacks["reliable"] > 10
        # the thorough reliable suite uses several estimators; each was timed on a real gradient
        assert len(r.estimators) > 3 and all(t > 0 for t in r.estimators.values())
    table = format_checks(rows)
    assert "| max-pool |" in table and "| avg-pool |" in table and "100 epochs" in table
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # writes nothing

    with pytest.raises(ConfigError, match="no variant"):
        check_study("pooling-tradeoff", "full", str(tmp_path), "cpu", batch=2, variants=["nope"])
    with pytest.raises(ConfigError, match="sizes"):
        check_study("pooling-tradeoff", "huge", str(tmp_path), "cpu")
    assert main(["study", "pooling-tradeoff", "--size", "full", "--check", "--check-batch", "0"]) == 2
    assert "--check-batch must be a positive integer" in capsys.readouterr().err
    # without the data the check fails the way the study would: one line saying how to get it
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["study", "pooling-tradeoff", "--size", "full", "--check", "--data-root", str(empty)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1


def test_quick_study_check_via_cli(tmp_path, monkeypatch, capsys):
    from snnrobust.cli.main import main

    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(RECIPE)
    monkeypatch.chdir(tmp_path)
    assert main(["study", str(recipe), "--check", "--size", "quick", "--check-batch", "4", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "| max-pool |" in out and "| avg-pool |" in out and "fgsm: 1, pgd: 1" in out
    assert "starts: every model, attack and estimator checked" in out
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("change, message", [
    (("protocols", [{"name": "p"}]), "exactly one of 'suite' or 'attack'"),
    (("protocols", [{"name": "p", "suite": "reliable", "attack": "pgd"}]), "exactly one of 'suite' or 'attack'"),
    (("protocols", [{"name": "p", "suite": "nope"}]), "unknown suite"),
    (("protocols", [{"name": "p", "suite": "reliable", "budget": "huge"}]), "unknown budget"),
    (("protocols", [{"name": "p", "attack": "nope"}]), "unknown attack"),
    (("protocols", [{"name": "p", "attack": "pgd"}, {"name": "p", "attack": "fgsm"}]), "unique name"),
    (("protocols", {"name": "p", "attack": "pgd"}), "'protocols' must be a list of mappings"),
    (("protocols", [{"name": "p", "attack": "transfer", "transfer": "everyone"}]), "choose one of: other-variants"),
    (("black_box_sources", {"max-pool": "no-such"}), "must name two different variants"),
    (("black_box_sources", {"max-pool": "max-pool"}), "must name two different variants"),
    (("eval", {"samples": 12}), "'eval' needs 'eps' and 'samples'"),
    (("variants", [{"label": "a"}, {"label": "a"}]), "unique label"),
    (("variants", [{"model": {}}]), "unique label"),
])
def test_bad_recipe_is_one_line_error(tmp_path, change, message):
    import yaml

    d = yaml.safe_load(RECIPE)
    key, value = change
    d["sizes"]["quick"][key] = value
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(d))
    with pytest.raises(ConfigError, match=message) as e:
        load_recipe(str(path))
    assert "\n" not in str(e.value)
