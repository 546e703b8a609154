"""A crashed attack never shrinks the worst case silently (issue 9, fix 1), and two bad inputs
(`--n` beyond the test split, an eps ball that holds every image) are said out loud.

Crashes are simulated by wrapping the attacks that :mod:`snnrobust.evaluation.engine` builds:
an out-of-memory error (``torch.OutOfMemoryError`` or a RuntimeError saying "CUDA out of
memory", what a GPU raises) or another error in chosen batches. Tiny linear model, synthetic
data, tmp_path only.
"""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from snnrobust.evaluation import engine as ev
from snnrobust.evaluation.results import read_result, write_result
from snnrobust.evaluation.suites import Budget
from snnrobust.evaluation.threat import ThreatModel
from snnrobust.report import build_sections, claim_verdict, model_verdict, write_report
from snnrobust.report import read as R
from snnrobust.report.verdicts import CLAIM_INCONCLUSIVE, INCONCLUSIVE, NOT_ESTABLISHED, REPRODUCED, ROBUST

pytestmark = pytest.mark.usefixtures("one_thread")

# pgd without a random start: each sample's result depends on that sample only (a linear
# model, per-sample loss), so a batch split in halves must give exactly the same points
PGD = {"steps": 10, "random_start": False}
TINY = Budget(name="tiny", steps=10, restarts=1, surrogate_widths=(1.0,), extra_estimators=(),
              estimator_attacks=("apgd-ce",), own_attacks=("pgd",), eot=1, target_classes=1,
              square_queries=10, transfer_steps=5, diag_n=16, diag_steps=5, diag_more_steps=10, diag_restarts=1,
              diag_noise_draws=2)


class Linear(nn.Module):
    """logits = W (x - 0.5) with orthogonal +-1 rows: samples near the class template break
    at eps ~ their margin, so some but not all break at eps = 0.1."""

    def __init__(self, k: int = 4) -> None:
        super().__init__()
        h = torch.ones(1, 1)
        while h.shape[0] < 16:
            h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
        self.fc = nn.Linear(16, k, bias=False)
        with torch.no_grad():
            self.fc.weight.copy_(h[1:k + 1])

    def forward(self, x):
        return self.fc(x.flatten(1) - 0.5)


def data(n: int = 32, k: int = 4):
    g = torch.Generator().manual_seed(0)
    y = torch.arange(n) % k
    amp = torch.linspace(0.04, 0.16, n)[:, None]  # margins spread around eps = 0.1
    x = 0.5 + amp * Linear(k).fc.weight.detach()[y] + 0.02 * (2 * torch.rand(n, 16, generator=g) - 1)
    return x.clamp(0, 1).view(n, 1, 4, 4), y


def crash(monkeypatch, fail):
    """Wrap every attack built by the evaluation: ``fail(call_number, z0, y)`` returns an
    exception to raise instead of running that batch, or None. Returns the batch sizes seen."""
    real = ev.get_attack
    sizes: list[int] = []

    def build(name, **opts):
        atk = real(name, **opts)
        run = atk.run

        def run_or_crash(victim, z0, y, keys=None):
            sizes.append(int(y.shape[0]))
            e = fail(len(sizes), z0, y)
            if e is not None:
                raise e
            return run(victim, z0, y, keys=keys)

        atk.run = run_or_crash
        return atk

    monkeypatch.setattr(ev, "get_attack", build)
    return sizes


def holds_any(z0: torch.Tensor, rows: torch.Tensor) -> bool:
    """Whether the batch z0 contains any of the images ``rows``."""
    return bool((z0.flatten(1)[:, None, :] == rows.flatten(1)[None]).all(-1).any())


def oom(kind: str) -> BaseException:
    msg = "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79.3 GiB total capacity)"
    return torch.OutOfMemoryError(msg) if kind == "OutOfMemoryError" else RuntimeError(msg)


# ----------------------------------------------------------------------------- retry at half batch size
@pytest.mark.parametrize("kind", ["OutOfMemoryError", "RuntimeError"])
@pytest.mark.parametrize("when", ["batch 2 once", "every batch above 2"])
def test_out_of_memory_is_retried_at_half_batch_with_the_same_worst_case(monkeypatch, kind, when):
    model = Linear().eval()
    x, y = data()
    threat = ThreatModel(eps=0.1)
    ref = ev.evaluate(model, x, y, attack="pgd", attack_options=PGD, threat=threat, batch_size=8, progress=False)
    assert 0 < ref.worst_case.robust_accuracy.k < ref.clean.k  # some, not all, samples break

    if when == "batch 2 once":
        sizes = crash(monkeypatch, lambda call, z0, y_: oom(kind) if call == 2 else None)
    else:
        sizes = crash(monkeypatch, lambda call, z0, y_: oom(kind) if y_.shape[0] > 2 else None)
    res = ev.evaluate(model, x, y, attack="pgd", attack_options=PGD, threat=threat, batch_size=8, progress=False)

    assert res.complete and res.incomplete == [] and res.to_dict()["complete"] is True
    assert res.worst_case.per_sample == ref.worst_case.per_sample
    assert res.worst_case.robust_accuracy == ref.worst_case.robust_accuracy
    rec = res.attacks[0]
    assert rec.n_attacked == 32 and "error" not in rec.meta
    if when == "batch 2 once":
        assert sizes == [8, 8, 4, 4, 8, 8]  # batch 2 halved, the others untouched
        assert rec.meta["out_of_memory_retries"] == {"batch_sizes": [8], "smallest_tried": 4}
    else:
        assert max(s for s in sizes if s <= 2) == 2 and sizes.count(2) == 16
        assert rec.meta["out_of_memory_retries"]["batch_sizes"] == [8, 4]
    assert any("ran out of memory at batch size 8" in n for n in res.notes)
    assert "INCOMPLETE" not in res.table()


# ----------------------------------------------------------------------------- a failure that stays
@pytest.mark.parametrize("error", ["oom", "other"])
def test_persistent_failure_in_batch_2_keeps_batch_1_and_marks_the_result_incomplete(monkeypatch, tmp_path, error):
    model = Linear().eval()
    x, y = data()
    threat = ThreatModel(eps=0.1)
    ref = ev.evaluate(model, x, y, attack="pgd", attack_options=PGD, threat=threat, batch_size=8, progress=False)
    assert ref.clean.k == 32
    poison = x[8:16]  # batch 2: out of memory even one image at a time, or an error in the attack's code

    def fail(call, z0, y_):
        if not holds_any(z0, poison):
            return None
        return oom("OutOfMemoryError") if error == "oom" else IndexError("index 7 is out of bounds for dimension 0")

    sizes = crash(monkeypatch, fail)
    res = ev.evaluate(model, x, y, attack="pgd", attack_options=PGD, threat=threat, batch_size=8, progress=False)

    if error == "oom":  # retried down to single images: 8 -> 4+4 -> 2x4 -> 1x8
        assert sizes[0] == 8 and sizes[-2:] == [8, 8]
        assert sorted(sizes[1:-2]) == sorted([8, 4, 4, 2, 2, 2, 2] + [1] * 8)
    else:  # not a memory problem: no retry, the next batches still run
        assert sizes == [8, 8, 8, 8]
    # what batches 1, 3 and 4 broke is kept, exactly as without the crash
    kept = [i for i in range(32) if not 8 <= i < 16]
    assert [res.worst_case.per_sample[i] for i in kept] == [ref.worst_case.per_sample[i] for i in kept]
    assert any(ref.worst_case.per_sample[i] is not None for i in range(8))  # batch 1 broke something
    assert all(res.worst_case.per_sample[i] is None for i in range(8, 16))  # counted robust, but flagged:
    assert not res.complete
    [f] = res.incomplete
    assert f["attack"] == "pgd/bptt" and f["not_attacked"] == list(range(8, 16)) and f["n_not_attacked"] == 8
    assert f["counted_robust"] == 8 and f["eps"] == pytest.approx(0.1)
    assert ("OutOfMemoryError: CUDA out of memory" if error == "oom" else "IndexError: index 7") in f["error"]
    assert "did not attack 8 of the 32 samples" in f["reason"] and "up to 8/32 too high" in f["reason"]
    rec = res.attacks[0]
    assert rec.n_attacked == 24 and rec.meta["not_attacked"] == 8 and rec.n_broken == sum(
        ref.worst_case.per_sample[i] is not None for i in kept)
    # the JSON and its loader carry it; the table says it plainly
    d = res.to_dict()
    assert d["complete"] is False and d["incomplete"][0]["not_attacked"] == list(range(8, 16))
    path = write_result(res, tmp_path / "r.json")
    back = read_result(path)
    assert not back.complete and back.incomplete == json.loads(path.read_text())["incomplete"]
    table = res.table().splitlines()
    assert table[1].startswith("INCOMPLETE: ") and "pgd/bptt" in table[1]
    assert any("FAILED on 8 samples" in line for line in table)
    assert any(line.startswith("Worst case") and "INCOMPLETE" in line for line in table)


def test_crash_in_a_cascade_suite_keeps_every_attack_s_work(monkeypatch):
    model = Linear().eval()
    x, y = data()
    threat = ThreatModel(eps=0.1)
    poison = x[8:16]
    crash(monkeypatch, lambda call, z0, y_: RuntimeError("CUDA error: an illegal memory access was encountered")
          if holds_any(z0, poison) and y_.shape[0] > 1 and call < 4 else None)
    res = ev.evaluate(model, x, y, suite="reliable", threat=threat, budget=TINY, progress=False,
                      diagnostics=False, batch_size=8)
    first = res.attacks[0]
    assert first.meta["not_attacked"] == 8 and first.n_attacked == 24 and first.n_broken > 0
    # the samples the first attack skipped were attacked by the next ones in the cascade
    assert res.attacks[1].n_attacked == 32 - first.n_broken
    assert not res.complete and res.incomplete[0]["attack"] == first.id
    still = res.incomplete[0]["counted_robust"]
    assert still == sum(res.worst_case.per_sample[i] is None for i in range(8, 16))
    assert f"up to {still}/32 too high" in res.incomplete[0]["reason"]


def test_old_result_with_a_failed_attack_reads_as_incomplete(tmp_path):
    model = Linear().eval()
    x, y = data(8)
    d = ev.evaluate(model, x, y, attack="fgsm", threat=ThreatModel(eps=0.1), progress=False).to_dict()
    assert d["complete"] is True and R.incomplete_reasons(d) == []
    for key in ("complete", "incomplete"):  # as written before these keys existed
        d.pop(key)
    d["attacks"][0]["meta"]["error"] = "RuntimeError: CUDA out of memory"
    path = tmp_path / "old.json"
    path.write_text(json.dumps(d))
    back = read_result(path)
    assert not back.complete and "fgsm" in back.incomplete[0]["reason"]
    assert back.to_dict()["complete"] is False
    assert R.incomplete_reasons(d) == ["attack fgsm/bptt failed (RuntimeError: CUDA out of memory); it broke nothing "
                                       "it was meant to attack"]


# ----------------------------------------------------------------------------- CLI
@pytest.fixture(scope="module")
def mnist5k():
    from snnrobust.data import get_dataset

    return get_dataset("mnist5k")  # loaded once for the CLI tests below (the slow part of them)


@pytest.fixture
def cli(mnist5k, monkeypatch):
    import snnrobust.data
    from snnrobust.cli.main import main

    monkeypatch.setattr(snnrobust.data, "get_dataset", lambda *a, **kw: mnist5k)
    return main


def test_cli_exits_non_zero_on_an_incomplete_result_but_writes_it(tiny_checkpoint, monkeypatch, capsys, cli):
    ckpt, tmp_path = tiny_checkpoint, tiny_checkpoint.parent
    crash(monkeypatch, lambda call, z0, y_: ValueError("bad shape in attack") if call == 2 else None)
    # the untrained model gets 6 of the first 64 images right; they are attacked 2 at a time
    # and the second batch crashes
    rc = cli(["attack", str(ckpt), "--attack", "fgsm", "--n", "64", "--batch-size", "2", "--no-progress",
               "--eps", "2/255"])
    cap = capsys.readouterr()
    err = cap.err.strip().splitlines()
    assert rc == 2 and err[-1].startswith("error: evaluation INCOMPLETE: fgsm/bptt") and "bad shape" in err[-1]
    lines = cap.out.splitlines()
    assert lines[0].startswith("Threat model:") and lines[1].startswith("INCOMPLETE:")
    assert "results written to" in cap.out
    d = json.loads((tmp_path / "tiny.attack-fgsm-quick.json").read_text())
    assert d["clean"]["k"] == 6 and d["complete"] is False
    [f] = d["incomplete"]
    assert f["n_not_attacked"] == 2 and f["n_scheduled"] == 6 and "ValueError: bad shape in attack" in f["error"]
    assert d["attacks"][0]["n_attacked"] == 4


def test_cli_says_when_n_exceeds_the_test_split(tiny_checkpoint, capsys, cli):
    ckpt, tmp_path = tiny_checkpoint, tiny_checkpoint.parent
    rc = cli(["attack", str(ckpt), "--attack", "fgsm", "--n", "5000", "--no-progress", "--eps", "2/255",
               "--batch-size", "500"])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    said = "--n 5000 asked, the test split has 1000 images: attacking 1000"
    assert f"note: {said}" in cap.err and f"note: {said}" in cap.out  # printed first, and in the table
    d = json.loads((tmp_path / "tiny.attack-fgsm-quick.json").read_text())
    assert d["data"]["n"] == 1000 and d["data"]["n_requested"] == 5000 and d["clean"]["n"] == 1000
    assert said in d["notes"]


# ----------------------------------------------------------------------------- eps that reaches everything
@pytest.mark.parametrize("norm, eps, warned, hint", [
    ("linf", 1.0, True, True), ("linf", 8, True, True), ("linf", 0.99, False, False),
    ("l2", 4.0, True, False), ("l2", 3.9, False, False)])
def test_eps_ball_holding_every_image_is_warned(norm, eps, warned, hint):
    model = Linear().eval()
    x, y = data(8)  # 16 pixels: the L2 diagonal of [0, 1]^16 is 4
    res = ev.evaluate(model, x, y, attack="fgsm", threat=ThreatModel(norm=norm, eps=eps), progress=False)
    warnings = [n for n in res.notes if n.startswith("WARNING")]
    table = res.table().splitlines()
    if not warned:
        assert not warnings and not any("WARNING" in line for line in table)
        return
    assert len(warnings) == 1 and "every input lies in the ball" in warnings[0]
    assert ("did you mean" in warnings[0]) == hint
    if norm == "linf" and eps == 8:
        assert "did you mean 8/255?" in warnings[0]
    assert table[1] == warnings[0]  # at the top of the table, right under the threat model
    assert read_result_dict(res)["notes"][0] == warnings[0]


def read_result_dict(res) -> dict:
    return json.loads(json.dumps(res.to_dict()))


# ----------------------------------------------------------------------------- report and verdicts
def _rate(k: int, n: int) -> dict:
    lo, hi = R.wilson(k, n)
    return {"k": k, "n": n, "value": k / n, "ci": [lo, hi]}


def _evaluation(robust_k: int, incomplete: bool, n: int = 400, clean_k: int = 390) -> dict:
    res = {"schema": "snnrobust.evaluation/1", "suite": "reliable", "budget": "quick",
           "threat_model": {"norm": "linf", "eps": 8 / 255, "perturb": "pixels", "bn_mode": "eval"},
           "clean": _rate(clean_k, n),
           "attacks": [{"id": "apgd-ce/bptt", "attack": {"name": "apgd-ce"}, "scope": "cumulative",
                        "kind": "gradient", "n_attacked": clean_k, "n_broken": clean_k - robust_k,
                        "robust_accuracy": _rate(robust_k, n),
                        "attack_success_rate": _rate(clean_k - robust_k, clean_k),
                        "meta": {"error": "OutOfMemoryError: CUDA out of memory", "not_attacked": 100}
                        if incomplete else {}}],
           "worst_case": {"robust_accuracy": _rate(robust_k, n),
                          "attack_success_rate": _rate(clean_k - robust_k, clean_k)},
           "diagnostics": [{"name": d, "status": "PASS", "summary": ""} for d in ("eps-to-zero", "loss-rises")],
           "complete": not incomplete, "incomplete": []}
    if incomplete:
        res["incomplete"] = [{"attack": "apgd-ce/bptt", "eps": 8 / 255, "error": "OutOfMemoryError: CUDA out of memory",
                              "not_attacked": list(range(100)), "n_not_attacked": 100, "counted_robust": 90,
                              "reason": "INCOMPLETE: attack apgd-ce/bptt did not attack 100 samples"}]
    return res


def _study(incomplete: bool) -> dict:
    models = [{"label": lab, "clean_accuracy": _rate(390, 400)} for lab in ("a", "b")]
    evaluations = [{"model": "a", "protocol": "reliable", "weak": False, "result": _evaluation(350, incomplete)},
                   {"model": "b", "protocol": "reliable", "weak": False, "result": _evaluation(100, False)}]
    claims = [{"id": "a-more-robust", "seed": "000", "text": "a is more robust than b",
               "checks": [{"metric": "robust_accuracy", "protocol": "reliable", "expect": "greater", "a": "a",
                           "b": "b"}]}]
    return {"study": "crash", "models": models, "evaluations": evaluations, "claims": claims}


def test_report_and_verdicts_mark_an_incomplete_result(tmp_path):
    # the same numbers, complete: a is robust and the claim is reproduced
    study = _study(incomplete=False)
    assert model_verdict(study, "a").status == ROBUST
    assert claim_verdict(study, study["claims"][0]).verdict == REPRODUCED
    # incomplete: no verdict other than "not established" / inconclusive rests on it
    study = _study(incomplete=True)
    v = model_verdict(study, "a")
    assert v.status == NOT_ESTABLISHED and "INCOMPLETE" in v.text and "upper bound" in v.text
    c = claim_verdict(study, study["claims"][0])
    assert c.verdict == CLAIM_INCONCLUSIVE and c.checks[0].outcome == INCONCLUSIVE
    assert "evaluation of a is INCOMPLETE" in c.checks[0].sentence
    # the report shows it in red: a "bad" callout and a red INCOMPLETE badge next to the number
    summary = build_sections(study)[0]
    callouts = [b for b in summary.blocks if type(b).__name__ == "Callout"]
    assert callouts and callouts[0].tone == "bad" and "INCOMPLETE" in callouts[0].title
    paths = write_report(study, tmp_path / "report")
    html = paths["html"].read_text()
    assert '<span class="badge bad">INCOMPLETE</span>' in html
    assert 'class="callout bad" role="alert"><strong>⚠ INCOMPLETE EVALUATIONS' in html
    md = paths["markdown"].read_text()
    assert "**INCOMPLETE**" in md and "> **⚠ INCOMPLETE EVALUATIONS" in md
    # a complete study has none of it
    clean_html = write_report(_study(incomplete=False), tmp_path / "ok")["html"].read_text()
    assert "INCOMPLETE" not in clean_html


# ----------------------------------------------------------------------------- studies
STUDY = """
name: crashy
seed: "000"
title: a study whose attack crashes once
description: tests
sizes:
  quick:
    dataset: mnist5k
    train: {epochs: 1, batch_size: 50, max_train_samples: 100, seed: 0}
    model: {name: sew_resnet, layers: [1, 1], width: 4, T: 2, encoder: phase, stem_pool: true, pool: avg}
    variants:
      - {label: avg-pool}
    eval: {samples: 12, eps: 0.1, eps_sweep: [], batch_size: 4}
    protocols:
      - {name: pgd, attack: pgd, options: {steps: 2}}
"""


def test_study_stores_an_incomplete_evaluation_flagged_and_retries_it(tmp_path, monkeypatch):
    import snnrobust.studies.runner as runner
    from snnrobust.store import ResultsStore
    from snnrobust.store.compare import records_table
    from snnrobust.studies import load_recipe

    recipe = tmp_path / "crashy.yaml"
    recipe.write_text(STUDY)
    x, y = data(12)
    logs: list[str] = []

    def evaluate_all() -> list[dict]:
        # the runner's evaluation stage on a hand-built model (no training, no report)
        r = runner.StudyRunner(load_recipe(str(recipe)), "quick", tmp_path / "study", device="cpu", progress=False,
                               log=logs.append)
        r.models = {"lin": {"model": Linear().eval(), "sha": "ab" * 32, "entry": {"attacked": True, "checkpoint": "-"}}}
        with ResultsStore(tmp_path / "study") as st:
            r.store = st
            evs = r.evaluate_all(x, y, {"dataset": "synthetic"})
            rows = st.records(kind="evaluation")
        assert len(rows) == 1 and rows[0].payload == evs[0]["result"]
        # `snnrobust results` lists it flagged (or not) too
        listed = records_table(rows)
        assert ("INCOMPLETE (an attack crashed; upper bound)" in listed) == bool(r.incomplete), listed
        return evs, r.incomplete

    calls = []
    real = runner.evaluate
    monkeypatch.setattr(runner, "evaluate", lambda *a, **kw: (calls.append(1), real(*a, **kw))[1])
    crash(monkeypatch, lambda call, z0, y_: RuntimeError("CUDA error: unspecified launch failure")
          if call == 2 else None)
    [e], incomplete = evaluate_all()
    # stored as it is, flagged, and surfaced
    assert e["result"]["complete"] is False and "unspecified launch failure" in e["result"]["incomplete"][0]["error"]
    assert incomplete == ["lin / pgd"] and any("lin / pgd: INCOMPLETE" in line for line in logs)
    # a re-run retries it (the crash is gone now) and replaces the stored row
    monkeypatch.setattr(ev, "get_attack", _real_get_attack())
    [e], incomplete = evaluate_all()
    assert len(calls) == 2 and incomplete == [] and e["result"]["complete"] is True
    assert any("stored result is INCOMPLETE; computing it again" in line for line in logs)
    # a complete result is reused, as before
    [e2], _ = evaluate_all()
    assert len(calls) == 2 and e2 == e


def test_study_command_exits_non_zero_when_an_evaluation_is_incomplete(tmp_path, monkeypatch, capsys):
    import snnrobust.cli.cmd_study as cmd_study
    from snnrobust.cli.main import main

    paths = {"html": tmp_path / "report.html", "markdown": tmp_path / "report.md", "incomplete": ["lin / pgd"]}
    monkeypatch.setattr(cmd_study, "run_study", lambda *a, **kw: paths)
    assert main(["study", "whatever", "--out", str(tmp_path)]) == 2
    cap = capsys.readouterr()
    assert "report: " in cap.out and cap.err.strip() == ("error: study incomplete: an attack crashed in lin / pgd; "
                                                         "the report marks it, re-run the same command to retry")
    paths["incomplete"] = []
    assert main(["study", "whatever", "--out", str(tmp_path)]) == 0


def _real_get_attack():
    from snnrobust.attacks.registry import get_attack

    return get_attack


def test_alert_lines_are_red_on_a_terminal_only(monkeypatch):
    import io

    from snnrobust.cli.cmd_attack import _red_alerts

    table = "Threat model: Linf\nINCOMPLETE: attack pgd ...\nclean 90%\nWARNING: L-inf eps=8 ..."
    tty = io.StringIO()
    tty.isatty = lambda: True
    monkeypatch.setattr("sys.stdout", tty)
    monkeypatch.delenv("NO_COLOR", raising=False)
    lines = _red_alerts(table).splitlines()
    assert lines[0] == "Threat model: Linf" and lines[2] == "clean 90%"
    assert lines[1] == "\033[31mINCOMPLETE: attack pgd ...\033[0m" and lines[3].startswith("\033[31mWARNING")
    monkeypatch.setenv("NO_COLOR", "1")
    assert _red_alerts(table) == table
    monkeypatch.setattr("sys.stdout", io.StringIO())  # a pipe or a file: plain text
    monkeypatch.delenv("NO_COLOR")
    assert _red_alerts(table) == table
