"""Studies: recipes load, a study killed midway resumes without recomputation or duplicates."""

import json
import time

import pytest
import torch

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
    replicates: 1
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
    import datetime

    real_vuln = runner.StudyRunner.vulnerability_all
    # "created" is when this run began, not when it finished: make its last stage 3 s late
    monkeypatch.setattr(runner.StudyRunner, "vulnerability_all",
                        lambda self, splits: (time.sleep(3), real_vuln(self, splits))[1])
    before = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    run_study(str(recipe), "quick", out, progress=False, log=lambda s: None)
    assert calls == []  # a finished study recomputes nothing
    created = datetime.datetime.fromisoformat(json.loads((out / "study.json").read_text())["created"])
    assert before <= created < before + datetime.timedelta(seconds=2.5)
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
    assert main(["study", "pooling-tradeoff", "--replicates", "0"]) == 2
    assert "--replicates must be a positive integer" in capsys.readouterr().err
    assert main(["demo", "--replicates", "-1"]) == 2
    assert "--replicates must be a positive integer" in capsys.readouterr().err
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
    (("protocols", [{"name": "p", "suite": "reliable", "overrides": {"bogus": 1}}]), "unknown setting"),
    (("protocols", [{"name": "p", "suite": "reliable", "overrides": [1]}]), "'overrides' must map"),
    (("protocols", [{"name": "p", "attack": "pgd", "samples": 99}]), "'samples' must be an integer from 1"),
    (("protocols", [{"name": "p", "attack": "pgd", "models": ["nope"]}]), "'models' must list variant labels"),
    (("protocols", [{"name": "p", "attack": "pgd", "vote": 0}]), "'vote' must be a positive integer"),
    (("replicates", 0), "'replicates' must be an integer from 1"),
    (("replicates", True), "'replicates' must be an integer from 1"),
    (("replicates", "3"), "'replicates' must be an integer from 1"),
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


# -------------------------------------------------- derived variants (Sharmin et al. 2020's three models)
DERIVED = """
name: tiny-three
seed: "001"
title: tiny three-model study
description: ANN, converted SNN and fine-tuned SNN, tiny
claims: []
sizes:
  quick:
    replicates: 1
    dataset: mnist5k
    train: {epochs: 1, batch_size: 50, max_train_samples: 100, seed: 0}
    model: {name: vgg5, width: 2, fc_hidden: 16, T: 2, normalize_mean: 0.5, normalize_std: 0.5}
    variants:
      - {label: ann, train: {method: ann}}
      - {label: conv, convert: {from: ann, method: balance, T: 4, calibration_samples: 16, timestep_grid: [4],
                                eval_samples: 10, encoder: direct}}
      - {label: bp, init_from: conv, model: {T: 2}, train: {epochs: 1}}
    eval: {samples: 8, eps: 0.1, eps_sweep: [], batch_size: 8}
    protocols:
      - {name: fgsm, attack: fgsm, weak: true}
      - {name: pgd, attack: pgd, options: {steps: 2}, models: [ann, bp], samples: 4, vote: 3}
      - {name: reliable, suite: reliable, models: [bp], samples: 3,
         overrides: {steps: 2, square_queries: 5, diag_n: 3, diag_steps: 1, diag_more_steps: 2, diag_restarts: 1}}
"""


def test_study_converts_and_fine_tunes_in_order_and_resumes(tmp_path, monkeypatch):
    recipe = tmp_path / "three.yaml"
    recipe.write_text(DERIVED)
    out = tmp_path / "study"
    run_study(str(recipe), "quick", out, device="cpu", progress=False, log=lambda s: None)
    study = json.loads((out / "study.json").read_text())
    entries = {m["label"]: m for m in study["models"]}
    steps = {k: [s["step"] for s in e["provenance"]] for k, e in entries.items()}
    assert steps == {"ann": [], "conv": ["ann-training", "conversion"],
                     "bp": ["ann-training", "conversion", "hybrid-fine-tuning"]}
    assert entries["conv"]["model_config"]["thresholds"] and entries["conv"]["model_config"]["T"] == 4
    assert entries["bp"]["model_config"]["neuron"] == "lif" and entries["bp"]["model_config"]["T"] == 2
    assert entries["ann"]["model_config"]["spiking"] is False
    # the fine-tuned variant started from the study's own converted checkpoint
    bp_step = next(s for s in entries["bp"]["provenance"] if s["step"] == "hybrid-fine-tuning")
    assert bp_step["init_from"] == str(out / "models" / "conv" / "checkpoint.pt")
    # a protocol restricted with `models:` ran on those variants only
    ran = {(e["model"], e["protocol"]) for e in study["evaluations"]}
    assert ran == {("ann", "fgsm"), ("conv", "fgsm"), ("bp", "fgsm"), ("ann", "pgd"), ("bp", "pgd"), ("bp", "reliable")}
    # `samples:` attacks the first N evaluation images; `overrides:` scales the budget, named in the result
    n = {(e["model"], e["protocol"]): e["result"]["clean"]["n"] for e in study["evaluations"]}
    assert n[("bp", "pgd")] == 4 and n[("bp", "fgsm")] == 8 and n[("bp", "reliable")] == 3
    votes = {(e["model"], e["protocol"]): e["result"]["vote"] for e in study["evaluations"]}
    assert votes[("bp", "pgd")] == 3 and votes[("bp", "fgsm")] == 1  # `vote:` is the protocol's own
    rel = next(e["result"] for e in study["evaluations"] if e["protocol"] == "reliable")
    assert rel["budget_settings"]["steps"] == 2 and any("budget overridden" in t for t in rel["notes"])
    # the fine-tuned SNN has a source ANN: the reliable suite attacked it through the ANN too
    assert any((a.get("estimator") or {}).get("name") == "source-ann" for a in rel["attacks"])
    # a re-run converts, trains and attacks nothing again
    monkeypatch.setattr(runner, "convert_checkpoint", lambda *a, **k: pytest.fail("converted again"))
    monkeypatch.setattr(runner, "evaluate", lambda *a, **k: pytest.fail("evaluated again"))
    run_study(str(recipe), "quick", out, device="cpu", progress=False, log=lambda s: None)
    # a converted checkpoint that no longer matches the recipe is refused, not silently reused
    import yaml

    d = yaml.safe_load(DERIVED)
    d["sizes"]["quick"]["variants"][1]["convert"]["T"] = 6
    recipe.write_text(yaml.safe_dump(d))
    with pytest.raises(ConfigError, match="converted from another ANN or with other settings"):
        run_study(str(recipe), "quick", out, device="cpu", progress=False, log=lambda s: None)


@pytest.mark.parametrize("change, message", [
    (lambda v: v[1]["convert"].update({"from": "bp"}), "'convert' needs 'from' naming an ANN variant"),
    (lambda v: v[1]["convert"].update({"from": "nope"}), "'convert' needs 'from' naming an ANN variant"),
    (lambda v: v[1]["convert"].update({"bogus": 1}), "unknown conversion option"),
    (lambda v: v[1]["convert"].update({"method": "magic"}), "conversion method must be"),
    (lambda v: v[2].update({"init_from": "ann"}), "'init_from' must name a converted variant"),
    (lambda v: v.reverse(), "listed before it"),
    (lambda v: v[2].update({"convert": {"from": "ann"}}), "has both 'convert' and 'init_from'"),
])
def test_bad_derived_variants_are_one_line_errors(tmp_path, change, message):
    import yaml

    d = yaml.safe_load(DERIVED)
    change(d["sizes"]["quick"]["variants"])
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(d))
    with pytest.raises(ConfigError, match=message) as e:
        load_recipe(str(path))
    assert "\n" not in str(e.value)


def test_bad_protocol_models_is_one_line_error(tmp_path):
    import yaml

    d = yaml.safe_load(DERIVED)
    d["sizes"]["quick"]["protocols"][1]["models"] = ["nope"]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(d))
    with pytest.raises(ConfigError, match="'models' must list variant labels"):
        load_recipe(str(path))


def test_quick_check_of_derived_variants(tmp_path, monkeypatch, capsys):
    from snnrobust.studies.preflight import check_study

    recipe = tmp_path / "three.yaml"
    recipe.write_text(DERIVED)
    monkeypatch.chdir(tmp_path)
    rows = check_study(str(recipe), "quick", None, "cpu", batch=4, log=lambda s: None)
    by = {r.label: r for r in rows}
    assert set(by) == {"ann", "conv", "bp"} and by["conv"].epochs == 0 and by["bp"].epochs == 1
    assert set(by["bp"].attacks) == {"fgsm", "pgd", "reliable"} and set(by["conv"].attacks) == {"fgsm"}
    assert list(tmp_path.iterdir()) == [recipe]  # the check writes nothing


def test_sharmin_full_size_check_on_cifar_files(tmp_path, monkeypatch):
    # `study sharmin-three-models --size full --check` on CIFAR-10 in its real on-disk format (a tiny fake
    # copy): every variant is built the way the study makes it (the converted ones in memory from their
    # untrained ANN), the fine-tuned SNN and the ANN are stepped and attacked; the T=2000 converted SNN
    # is built but not attacked here (its gradients at T=2000 are GPU work)
    from cifar_files import make_cifar10
    from snnrobust.studies.preflight import check_study

    make_cifar10(tmp_path / "cifar-10-batches-py", style="2", n=3)
    monkeypatch.chdir(tmp_path)
    rows = check_study("sharmin-three-models", "full", str(tmp_path), "cpu", batch=2,
                       variants=["ann", "snn-bp"], log=lambda s: None)
    by = {r.label: r for r in rows}
    assert set(by) == {"ann", "snn-bp"} and by["ann"].epochs == 100 and by["snn-bp"].epochs == 20
    assert set(by["snn-bp"].attacks) == {"seed-sharmin2020", "black-box", "reliable"}
    assert "source-ann" not in by["snn-bp"].estimators or by["snn-bp"].estimators["source-ann"] > 0
    assert len(by["snn-bp"].estimators) >= 3 and all(t > 0 for t in by["snn-bp"].estimators.values())


# -------------------------------------------------- replicates: independently seeded, resumable units
REPLICATED = """
name: tiny-replicates
seed: "000"
title: tiny replicated study
description: two variants, two replicates each
claims:
  - id: c
    seed: "000"
    text: "avg raises robust accuracy"
    checks:
      - {metric: robust_accuracy, protocol: fgsm, expect: greater, a: avg-pool, b: max-pool}
sizes:
  quick:
    replicates: 2
    dataset: mnist5k
    train: {epochs: 2, batch_size: 50, max_train_samples: 100, seed: 5}
    model: {name: sew_resnet, layers: [1, 1], width: 4, T: 2, encoder: phase, stem_pool: true}
    variants:
      - {label: max-pool, model: {pool: max}}
      - {label: avg-pool, model: {pool: avg}}
    eval: {samples: 8, eps: 0.1, eps_sweep: [], batch_size: 8}
    protocols:
      - {name: fgsm, attack: fgsm, weak: true}
"""


def test_replicates_are_seeded_units_that_resume_independently_after_a_kill(tmp_path, monkeypatch):
    import snnrobust.training.trainer as trainer

    recipe = tmp_path / "rep.yaml"
    recipe.write_text(REPLICATED)
    out = tmp_path / "study"
    steps: dict[str, int] = {}
    current = {"out": ""}
    real_train, real_step = runner.train, trainer.train_step

    def tracking_train(cfg, **kw):
        current["out"] = cfg.out
        return real_train(cfg, **kw)

    def counting_step(*a, **kw):
        steps[current["out"]] = steps.get(current["out"], 0) + 1
        if kill and "replicate-1" in current["out"] and steps[current["out"]] == 3:
            raise KeyboardInterrupt  # killed in the second epoch of replicate 1's first variant
        return real_step(*a, **kw)

    monkeypatch.setattr(runner, "train", tracking_train)
    monkeypatch.setattr(trainer, "train_step", counting_step)
    kill = True
    with pytest.raises(KeyboardInterrupt):
        run_study(str(recipe), "quick", out, device="cpu", progress=False, log=lambda s: None)
    rep0 = {str(out / "models" / "max-pool"), str(out / "models" / "avg-pool")}
    rep1_max = str(out / "models" / "replicate-1" / "max-pool")
    assert {k: steps[k] for k in rep0} == {k: 4 for k in rep0} and steps[rep1_max] == 3
    with ResultsStore(out) as st:
        assert len(st.records(kind="train")) == 2  # replicate 0's two models are stored units
    steps.clear()
    kill = False
    run_study(str(recipe), "quick", out, device="cpu", progress=False, log=lambda s: None)
    # replicate 0 reused (not one step); replicate 1 resumed from its epoch-1 checkpoint; its other model trained
    assert all(k not in steps for k in rep0)
    assert steps == {rep1_max: 2, str(out / "models" / "replicate-1" / "avg-pool"): 4}
    study = json.loads((out / "study.json").read_text())
    seeds = {(m["label"], m["replicate"]): m["seed"] for m in study["models"]}
    assert seeds == {("max-pool", 0): 5, ("avg-pool", 0): 5, ("max-pool", 1): 6, ("avg-pool", 1): 6}
    assert all(len(m["clean_correct"]) == study["dataset"]["n_test"] for m in study["models"])
    ck1 = torch.load(out / "models" / "replicate-1" / "max-pool" / "checkpoint.pt", weights_only=True)
    assert ck1["train_config"]["seed"] == 6
    evs = {(e["model"], e["replicate"]): e["result"] for e in study["evaluations"]}
    assert set(evs) == {("max-pool", 0), ("avg-pool", 0), ("max-pool", 1), ("avg-pool", 1)}
    # every replicate is attacked on the same images (same labels, same count)
    assert len({tuple(r["worst_case"]["per_sample"].__len__() for r in evs.values())}) == 1
    assert study["replicates"] == 2 and study["machine"]["threads"] >= 1 and study["machine"]["cpu"]
    assert all(r["machine"]["torch"]["version"] for r in evs.values())
    md = (out / "report.md").read_text()
    assert "across 2 seeds (per seed:" in md and "(replicate 1, seed 6)" in md
    assert "McNemar over 2 seeds x 8 images" in md and "paired difference" in md
    assert (out / "figures" / "per_seed.png").is_file()


def test_defenses_full_size_check_times_the_defended_step(tmp_path, monkeypatch):
    # `study luu-vs-defenses --size full --check`: the baselines on their own architectures (WRN-16 for
    # SR, VGG-11 for SNN-RAT, not the SEW-ResNet options merged into them), each timed training step
    # taken with the variant's defense
    from cifar_files import make_cifar10
    from snnrobust.studies import preflight
    from snnrobust.studies.preflight import check_study, format_checks

    make_cifar10(tmp_path / "cifar-10-batches-py", style="2", n=3)
    monkeypatch.chdir(tmp_path)
    used = []
    real_step = preflight.train_step

    def spy(*args, defense=None, **kw):
        used.append(None if defense is None else defense.name)
        return real_step(*args, defense=defense, **kw)

    monkeypatch.setattr(preflight, "train_step", spy)
    monkeypatch.setattr(preflight, "_check_protocols", lambda *a, **k: None)  # attacks: covered above
    rows = check_study("luu-vs-defenses", "full", str(tmp_path), "cpu", batch=2, variants=["sr", "rat"],
                       log=lambda s: None)
    by = {r.label: r for r in rows}
    assert by["sr"].defense == "sr" and by["rat"].defense == "rat" and by["sr"].epochs == 200
    assert used == ["sr", "sr", "rat", "rat"]  # warm-up and timed step of each, defended
    assert 2_000_000 < by["sr"].parameters < 4_000_000  # WRN-16-4, not a SEW-ResNet-18
    assert "(sr)" in format_checks(rows)
