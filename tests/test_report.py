"""Report generation: valid self-contained HTML with every section, markdown with figures,
and verdict rules on crafted numbers. Synthetic study dicts only (no training, no attacks)."""

from __future__ import annotations

import copy
import math
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from snnrobust.evaluation.diagnostics import DiagnosticResult
from snnrobust.evaluation.metrics import Rate
from snnrobust.evaluation.results import AttackRecord, CurvePoint, EvaluationResult, WorstCase
from snnrobust.evaluation.suites import BUDGETS
from snnrobust.evaluation.threat import ThreatModel
from snnrobust.errors import ConfigError
from snnrobust.report import SECTION_IDS, build_sections, claim_verdict, model_verdict, write_report
from snnrobust.report import read as R
from snnrobust.report.verdicts import (CLAIM_INCONCLUSIVE, CONTRADICTED, FAILS, HOLDS, INCONCLUSIVE, NOT_ESTABLISHED,
                                      NOT_ROBUST, REPRODUCED, ROBUST, WEAK_ONLY, compare)


# -- synthetic study -----------------------------------------------------------------------
def rate(k: int, n: int) -> dict:
    lo, hi = R.wilson(k, n)
    return {"k": k, "n": n, "value": k / n, "ci": [lo, hi]}


def evaluation(clean_k: int, robust_k: int, n: int, *, eps: float = 6 / 255, perturb: str = "pixels",
               bn_mode: str = "eval", suite: str = "reliable", diagnostics=None, curve=True) -> dict:
    """The stored JSON of an evaluation, written by the typed objects (so it follows the schema)."""
    est = {"name": "bptt", "label": "BPTT[atan:2]"}
    attacks = [
        AttackRecord("fgsm/bptt", {"name": "fgsm"}, est, eot=1, vote=1, steps=1, restarts=1, kind="single-step",
                     scope="standalone", robust_accuracy=Rate(min(n, robust_k + 10), n),
                     attack_success_rate=Rate(max(0, clean_k - robust_k - 10), clean_k), n_attacked=clean_k,
                     n_broken=max(0, clean_k - robust_k - 10), time_s=0.1),
        AttackRecord("pgd/bptt", {"name": "pgd", "steps": 7, "step_size": 0.01, "abort_grad_norm": None}, est,
                     eot=1, vote=1, steps=7, restarts=1, kind="gradient", scope="standalone",
                     robust_accuracy=Rate(robust_k, n), attack_success_rate=Rate(clean_k - robust_k, clean_k),
                     n_attacked=clean_k, n_broken=clean_k - robust_k, time_s=0.2),
    ]
    worst = WorstCase(Rate(robust_k, n), Rate(clean_k - robust_k, clean_k),
                      {"fgsm/bptt": max(0, clean_k - robust_k - 3), "pgd/bptt": 3},
                      ["clean"] * (n - clean_k) + [None] * robust_k + ["pgd/bptt"] * (clean_k - robust_k))
    curve_pts = ([CurvePoint(e / 255, Rate(max(0, robust_k - 30 * i), n)) for i, e in enumerate((2, 6, 16))]
                 if curve else [])
    res = EvaluationResult(
        model={"class": "SEWResNet"}, data={"dataset": "mnist5k", "n": n},
        threat_model=ThreatModel(norm="linf", eps=eps, perturb=perturb, bn_mode=bn_mode), suite=suite, attack=None,
        budget=BUDGETS["quick"], seed=0, clean=Rate(clean_k, n), vote=1, eot=1, stochastic=False, attacks=attacks,
        worst_case=worst, eps_curve=curve_pts,
        diagnostics=[DiagnosticResult.from_dict(d) for d in diagnostics or []],
        replication=["perturbation on SPIKE TENSOR"] if perturb == "spikes" else [])
    return res.to_dict()


def diag(name: str, status: str) -> dict:
    return {"name": name, "status": status, "summary": f"{name} looked {status.lower()}", "numbers": {"x": 0.5}}


def sparsity(zero_frac: float, se: float, pool: str) -> dict:
    ops = [
        {"index": 0, "name": "stem.conv", "kind": "conv", "in_zero_frac": 0.1, "in_zero_frac_se": 0.01,
         "out_zero_frac": 0.5, "out_zero_frac_se": 0.02, "in_norm": 0.3, "in_norm_se": 0.01, "out_norm": 0.4,
         "out_norm_se": 0.02, "weight_density": 0.9, "has_weight": True, "n": 20, "in_numel": 144, "out_numel": 576},
        {"index": 1, "name": "stem.pool", "kind": f"{pool}pool", "in_zero_frac": 0.8 if pool == "max" else 0.3,
         "in_zero_frac_se": 0.02, "out_zero_frac": 0.3, "out_zero_frac_se": 0.02, "in_norm": 0.2, "in_norm_se": 0.01,
         "out_norm": 0.3, "out_norm_se": 0.01, "weight_density": None, "has_weight": False, "n": 20,
         "in_numel": 576, "out_numel": 144},
        {"index": 2, "name": "fc", "kind": "linear", "in_zero_frac": 0.0, "in_zero_frac_se": 0.0,
         "out_zero_frac": 0.0, "out_zero_frac_se": 0.0, "in_norm": 1.2, "in_norm_se": 0.1, "out_norm": 1.0,
         "out_norm_se": 0.1, "weight_density": 0.4, "has_weight": True, "n": 20, "in_numel": 16, "out_numel": 10},
    ]
    return {"schema": "snnrobust.sparsity/1", "source": "attack", "estimator": "bptt (model's surrogate)",
            "n_samples": 20, "batch_size": 10,
            "input": {"zero_frac": zero_frac, "zero_frac_se": se, "norm": 0.05, "norm_se": 0.005}, "ops": ops}


def vulnerability(ratio: float) -> dict:
    return {"schema": "snnrobust.vulnerability/1", "settings": {"n_random": 4},
            "summary": {"n": 3, "eps": 6 / 255, "rho_rand": 0.01, "rho_rand_se": 0.002, "rho_adv": 0.01 * ratio,
                        "rho_adv_se": 0.01, "ratio": ratio, "l0": 40.0, "l0_se": 2.0, "l0_fraction": 0.28,
                        "n_inputs": 144, "bound_model": math.sqrt(2 * 44), "ratio_within_model_bound": True,
                        "frac_bound_holds": 1.0, "n_bound_violations": 0},
            "per_sample": {"bound": [8.0, 9.0, 9.4], "ratio": [ratio * 0.8, ratio, ratio * 1.2], "l0": [32, 40, 44]}}


def make_study() -> dict:
    """Two models, two protocols (weak seed + reliable), eps curves, diagnostics incl. a WARN."""
    n = 200
    models = []
    for label, group, clean_k in (("max-pool", "max", 190), ("avg-pool", "avg", 194)):
        models.append({"label": label, "group": group,
                       "model_config": {"name": "sew_resnet", "T": 2, "width": 4, "arch": {"pool": group}},
                       "train_config": {"epochs": 2, "lr": 1e-3, "optimizer": "adam"},
                       "checkpoint": f"/tmp/{label}.pt", "checkpoint_sha256": "ab" * 32,
                       "clean_accuracy": rate(clean_k, n),
                       "train_metrics": [{"epoch": 1, "train_loss": 1.2, "test_accuracy": 0.8},
                                         {"epoch": 2, "train_loss": 0.5, "test_accuracy": clean_k / n}]})
    all_pass = [diag("eps-to-zero", "PASS"), diag("iterative-beats-single", "PASS"), diag("loss-rises", "PASS")]
    with_warn = [diag("eps-to-zero", "WARN"), diag("iterative-beats-single", "PASS"), diag("loss-rises", "PASS")]
    evaluations = [
        {"model": "max-pool", "protocol": "seed-luu2025", "weak": True,
         "result": evaluation(190, 120, n, suite="seed-luu2025", perturb="spikes", bn_mode="train")},
        {"model": "avg-pool", "protocol": "seed-luu2025", "weak": True,
         "result": evaluation(194, 40, n, suite="seed-luu2025", perturb="spikes", bn_mode="train")},
        # max-pool keeps a high reliable robust accuracy but a diagnostic warns: never "robust".
        {"model": "max-pool", "protocol": "reliable", "weak": False,
         "result": evaluation(190, 150, n, diagnostics=with_warn)},
        {"model": "avg-pool", "protocol": "reliable", "weak": False,
         "result": evaluation(194, 150, n, diagnostics=all_pass)},
    ]
    claims = [{"id": "luu-tradeoff", "seed": "000",
               "text": "Average pooling raises clean accuracy and lowers robustness.",
               "checks": [
                   {"metric": "clean_accuracy", "expect": "greater", "a": "avg-pool", "b": "max-pool"},
                   {"metric": "robust_accuracy", "protocol": "seed-luu2025", "expect": "less", "a": "avg-pool",
                    "b": "max-pool"},
                   {"metric": "robust_accuracy", "protocol": "reliable", "expect": "less", "a": "avg-pool",
                    "b": "max-pool"},
                   {"metric": "input_zero_fraction", "expect": "less", "a": "avg-pool", "b": "max-pool"}]}]
    return {"study": "pooling-tradeoff", "size": "quick", "description": "max vs avg pooling (synthetic test study)",
            "created": "2026-11-01T12:00:00+00:00", "seconds": 123.0,
            "dataset": {"name": "mnist5k", "n_train": 4000, "n_test": 1000,
                        "split": {"method": "stratified", "seed": 0}},
            "models": models, "evaluations": evaluations,
            "sparsity": [{"model": "max-pool", "source": "attack", "result": sparsity(0.70, 0.02, "max")},
                         {"model": "avg-pool", "source": "attack", "result": sparsity(0.20, 0.02, "avg")}],
            "vulnerability": [{"model": "max-pool", "result": vulnerability(3.0)},
                              {"model": "avg-pool", "result": vulnerability(5.0)}],
            "claims": claims}


# -- HTML validity -------------------------------------------------------------------------
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class TagChecker(HTMLParser):
    """Checks that every non-void tag is closed in order; collects ids, srcs and hrefs."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.ids: set[str] = set()
        self.urls: list[str] = []
        self.tags: set[str] = set()

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        for key in ("src", "href"):
            if key in a:
                self.urls.append(a[key])
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag not in VOID:
            self.stack.pop()

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unexpected </{tag}> (open: {self.stack[-3:]})")
            return
        self.stack.pop()


def parse_html(text: str) -> TagChecker:
    p = TagChecker()
    p.feed(text)
    p.close()
    return p


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    folder = tmp_path_factory.mktemp("report")
    study = make_study()
    paths = write_report(study, folder)
    return study, folder, paths


def test_html_is_valid_self_contained_and_has_every_section(written):
    _, folder, paths = written
    assert Path(paths["html"]) == folder / "report.html"
    text = Path(paths["html"]).read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    p = parse_html(text)
    assert not p.errors, p.errors[:5]
    assert not p.stack, f"unclosed tags: {p.stack}"
    for sid in SECTION_IDS:
        assert sid in p.ids, f"section {sid} missing"
    assert "script" not in p.tags and "link" not in p.tags
    assert all(u.startswith("#") or u.startswith("data:image/png;base64,") for u in p.urls), \
        [u[:40] for u in p.urls if not u.startswith(("#", "data:"))]
    assert not re.search(r"(src|href)\s*=\s*[\"']?\s*(https?:)?//", text)
    n_images = text.count("data:image/png;base64,")
    assert n_images >= 6  # training, eps curve, 3 sparsity metrics, trade-off, vulnerability
    assert len(text) < 5_000_000
    # replication options are flagged prominently
    assert "REPLICATION OPTIONS IN FORCE" in text and "SPIKE TENSOR" in text
    # colour-coded statuses
    assert 'class="badge bad">WARN<' in text and 'class="badge good">PASS<' in text


def test_markdown_has_every_heading_and_figures(written):
    _, folder, paths = written
    md = Path(paths["markdown"]).read_text(encoding="utf-8")
    for s in build_sections(make_study()):
        assert f"\n## {s.title}\n" in md
    refs = re.findall(r"!\[[^\]]*\]\((figures/[^)]+\.png)\)", md)
    assert len(refs) >= 6
    for ref in refs:
        png = folder / ref
        assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(folder.glob("*.tmp")) and not list((folder / "figures").glob("*.tmp"))


def test_model_with_warn_is_never_called_robust(written):
    study, _, paths = written
    v = model_verdict(study, "max-pool")
    assert v.status == NOT_ESTABLISHED
    assert "robustness not established" in v.text and "eps-to-zero" in v.text
    assert "not" in v.text
    text = v.text.lower()
    # every use of "robust" as a verdict (not "robust accuracy") is negated
    for m in re.finditer(r"\brobust(ness)?\b(?! accuracy)", text):
        window = text[max(0, m.start() - 4): m.end() + 16]
        assert "not robust" in window or "robustness not" in window, window
    assert "empirically robust" not in text
    # the all-PASS model with 75 % robust accuracy at 97 % clean is called robust, with its budget
    good = model_verdict(study, "avg-pool")
    assert good.status == ROBUST and "empirically robust" in good.text and "quick" in good.text
    html = Path(paths["html"]).read_text(encoding="utf-8")
    assert "robustness not established: diagnostics warn of gradient masking (eps-to-zero" in html


def test_model_verdict_not_robust_and_weak_only():
    study = make_study()
    study["evaluations"][3]["result"] = evaluation(194, 10, 200, diagnostics=[diag("eps-to-zero", "PASS")])
    assert model_verdict(study, "avg-pool").status == NOT_ROBUST
    # low robust accuracy is conclusive even with a WARN (masking only inflates robust accuracy)
    study["evaluations"][2]["result"] = evaluation(190, 5, 200, diagnostics=[diag("loss-rises", "WARN")])
    v = model_verdict(study, "max-pool")
    assert v.status == NOT_ROBUST and "loss-rises" in v.text
    # only a weak protocol: not established, however high the number
    study["evaluations"] = study["evaluations"][:2]
    v = model_verdict(study, "max-pool")
    assert v.status == NOT_ESTABLISHED and "seed-luu2025" in v.text
    # a SKIP diagnostic prevents "robust" too
    study = make_study()
    study["evaluations"][3]["result"]["diagnostics"].append(diag("damage-order", "SKIP"))
    assert model_verdict(study, "avg-pool").status == NOT_ESTABLISHED


# -- claim verdicts ------------------------------------------------------------------------
def test_claim_only_under_weak_protocol():
    # default study: clean (194 vs 190 of 200) overlaps -> inconclusive; seed robust 40 < 120 holds;
    # reliable 150 vs 150 overlaps; zero fraction 0.2 < 0.7 holds
    study = make_study()
    study["models"][1]["clean_accuracy"] = rate(199, 200)
    study["models"][0]["clean_accuracy"] = rate(150, 200)
    c = claim_verdict(study, study["claims"][0])
    outcomes = [r.outcome for r in c.checks]
    assert outcomes == [HOLDS, HOLDS, INCONCLUSIVE, HOLDS]
    assert c.verdict == WEAK_ONLY
    assert "seed-luu2025" in c.explanation and "reliable" in c.explanation and "20.0%" in c.explanation


def test_claim_reproduced_contradicted_inconclusive():
    study = make_study()
    study["models"][1]["clean_accuracy"] = rate(199, 200)
    study["models"][0]["clean_accuracy"] = rate(150, 200)
    study["evaluations"][3]["result"] = evaluation(199, 20, 200, diagnostics=[diag("eps-to-zero", "PASS")])
    c = claim_verdict(study, study["claims"][0])
    assert [r.outcome for r in c.checks] == [HOLDS] * 4 and c.verdict == REPRODUCED

    # avg pooling has the HIGHER zero fraction, clearly: contradicted
    bad = copy.deepcopy(study)
    bad["sparsity"][1]["result"] = sparsity(0.95, 0.01, "avg")
    c = claim_verdict(bad, bad["claims"][0])
    assert c.checks[3].outcome == FAILS and c.verdict == CONTRADICTED
    assert "input-gradient zero fraction" in c.explanation

    # a reliable check that fails while its weak twin holds is "weak only", not "contradicted"
    flip = copy.deepcopy(study)
    flip["evaluations"][3]["result"] = evaluation(199, 190, 200, diagnostics=[diag("eps-to-zero", "PASS")])
    c = claim_verdict(flip, flip["claims"][0])
    assert c.checks[2].outcome == FAILS and c.verdict == WEAK_ONLY

    # everything overlapping: inconclusive (default study clean accuracies overlap, others made equal)
    unsure = make_study()
    unsure["sparsity"][1]["result"] = sparsity(0.69, 0.02, "avg")
    unsure["evaluations"][1]["result"] = evaluation(194, 119, 200, suite="seed-luu2025")
    c = claim_verdict(unsure, unsure["claims"][0])
    assert all(r.outcome == INCONCLUSIVE for r in c.checks) and c.verdict == CLAIM_INCONCLUSIVE


def test_claim_missing_numbers_are_inconclusive():
    study = make_study()
    del study["sparsity"]
    claim = {"id": "x", "seed": "000", "text": "t",
             "checks": [{"metric": "input_zero_fraction", "expect": "less", "a": "avg-pool", "b": "max-pool"},
                        {"metric": "robust_accuracy", "protocol": "standard", "expect": "less", "a": "avg-pool",
                         "b": "max-pool"},
                        {"metric": "no_such_metric", "expect": "less", "a": "avg-pool", "b": "max-pool"}]}
    c = claim_verdict(study, claim)
    assert [r.outcome for r in c.checks] == [INCONCLUSIVE] * 3 and c.verdict == CLAIM_INCONCLUSIVE
    assert "not measured" in c.checks[0].sentence and "no standard evaluation" in c.checks[1].sentence


def test_compare_rules():
    a = R.Estimate(0.9, 0.85, 0.95)
    b = R.Estimate(0.5, 0.45, 0.55)
    assert compare(a, b, "greater") == HOLDS and compare(a, b, "less") == FAILS
    assert compare(a, R.Estimate(0.84, 0.80, 0.86), "greater") == INCONCLUSIVE  # overlap
    assert compare(a, None, "greater") == INCONCLUSIVE and compare(a, b, "sideways") == INCONCLUSIVE
    m1, m2 = R.mean(0.7, 0.01), R.mean(0.2, 0.01)
    assert compare(m2, m1, "less") == HOLDS
    assert compare(R.mean(0.7, 0.1), R.mean(0.5, 0.1), "greater") == INCONCLUSIVE  # 0.7±0.196 vs 0.5±0.196
    # robust accuracy is the worst case the typed result records
    est, how = R.robust_accuracy(evaluation(190, 100, 200))
    assert est.k == 100 and est.n == 200 and how == "per-sample worst case over 2 attack(s)"


def test_unreadable_result_is_listed_and_no_verdict_rests_on_it(tmp_path):
    study = make_study()
    del study["evaluations"][3]["result"]["worst_case"]       # avg-pool / reliable: half-written
    study["sparsity"][0]["result"]["schema"] = "someone.else/1"  # max-pool sparsity: a foreign file
    st = R.load(study)
    assert [(u.kind, u.model, u.what) for u in st.unreadable] == [("evaluation", "avg-pool", "reliable"),
                                                                  ("sparsity", "max-pool", "attack")]
    assert "worst_case" in st.unreadable[0].reason and len(st.evaluations) == 3 and len(st.sparsity) == 1
    v = model_verdict(study, "avg-pool")  # robust when readable (see above); now not established
    assert v.status == NOT_ESTABLISHED and "reliable evaluation could not be read" in v.text
    md = Path(write_report(study, tmp_path)["markdown"]).read_text(encoding="utf-8")
    assert "UNREADABLE RESULTS" in md and "evaluation avg-pool / reliable: missing key 'worst_case'" in md


# -- typed reading ---------------------------------------------------------------------------
def _markdown(study, folder) -> str:
    text = Path(write_report(study, folder)["markdown"]).read_text(encoding="utf-8")
    return "\n".join(line for line in text.splitlines() if "report generated" not in line)


def test_report_reads_each_stored_result_once_through_its_typed_reader(tmp_path, monkeypatch):
    from snnrobust.analysis.results import VulnerabilityResult
    from snnrobust.analysis.sparsity import SparsityReport

    reference = _markdown(make_study(), tmp_path / "ref")
    calls = {}
    for cls in (EvaluationResult, SparsityReport, VulnerabilityResult):
        real = cls.from_dict

        def spy(klass, d, real=real, name=cls.__name__):
            out = real(d)
            calls[name] = calls.get(name, 0) + 1
            d.clear()  # the stored JSON is gone once read: any later look-up by key would find nothing
            return out

        monkeypatch.setattr(cls, "from_dict", classmethod(spy))
    assert _markdown(make_study(), tmp_path / "typed") == reference
    assert calls == {"EvaluationResult": 4, "SparsityReport": 2, "VulnerabilityResult": 2}


def test_unknown_keys_and_legacy_results_read_through_the_typed_loader(tmp_path):
    reference = _markdown(make_study(), tmp_path / "ref")
    # a newer writer's extra keys change nothing
    newer = make_study()
    for e in newer["evaluations"]:
        e["result"]["written_by_a_future_version"] = {"x": 1}
        e["result"]["attacks"][0]["future_attack_field"] = [1, 2]
        e["result"]["worst_case"]["future_worst_case_field"] = "y"
    assert _markdown(newer, tmp_path / "newer") == reference
    # a file written before ``complete`` / ``incomplete`` existed: complete, it reads the same
    legacy = make_study()
    for e in legacy["evaluations"]:
        del e["result"]["complete"], e["result"]["incomplete"]
    assert _markdown(legacy, tmp_path / "legacy") == reference
    # ... and one whose attack crashed (recorded then as breaking nothing) reads as INCOMPLETE
    res = legacy["evaluations"][3]["result"]  # avg-pool / reliable, robust when complete
    res["attacks"][1]["meta"] = {"error": "RuntimeError: CUDA out of memory"}
    assert R.load(legacy).evaluations[3].result.complete is False
    v = model_verdict(legacy, "avg-pool")
    assert v.status == NOT_ESTABLISHED and "INCOMPLETE" in v.text
    md = _markdown(legacy, tmp_path / "crashed")
    assert ("avg-pool / reliable: attack pgd/bptt failed (RuntimeError: CUDA out of memory); it broke nothing it "
            "was meant to attack") in md
    assert "pgd/bptt **INCOMPLETE** failed on - samples: RuntimeError: CUDA out of memory" in md


# -- missing parts -------------------------------------------------------------------------
def test_missing_sections_render_not_measured(tmp_path):
    study = make_study()
    for key in ("sparsity", "vulnerability"):
        del study[key]
    for e in study["evaluations"]:
        e["result"]["diagnostics"] = []
        e["result"]["eps_curve"] = []
    paths = write_report(study, tmp_path / "r1")
    html = Path(paths["html"]).read_text(encoding="utf-8")
    p = parse_html(html)
    assert not p.errors and not p.stack and set(SECTION_IDS) <= p.ids
    for sid in ("sparsity", "vulnerability", "diagnostics"):
        body = html.split(f'id="{sid}"', 1)[1].split("</section>", 1)[0]
        assert "not measured" in body, sid
    # a bare study (nothing but a name), odd types and a half-written evaluation do not crash
    bare = write_report({"study": "empty", "models": "oops", "evaluations": [{"model": "m", "result": {}}, 3]},
                        tmp_path / "r2")
    html = Path(bare["html"]).read_text(encoding="utf-8")
    p = parse_html(html)
    assert not p.errors and set(SECTION_IDS) <= p.ids and "not measured" in html
    assert Path(bare["markdown"]).read_text(encoding="utf-8").count("\n## ") == len(SECTION_IDS)


def test_bad_input_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError):
        write_report(["not", "a", "dict"], tmp_path)


def test_vulnerability_result_reads_what_the_report_object_writes():
    import numpy as np

    from snnrobust.analysis import VulnerabilityReport, VulnerabilityResult

    adv, rand = np.array([0.2, 0.0, 0.3]), np.array([0.1, 0.0, 0.05])  # sample 1: f_y never moved (ratio NaN)
    rep = VulnerabilityReport(eps=0.1, f_clean=np.array([0.9, 0.8, 0.7]), rand=rand, rand_draws=rand[:, None],
                              down=adv, up=adv / 2, adv=adv, l0=np.array([8.0, 2.0, 18.0]), n_inputs=20,
                              correct=np.array([True, True, False]), noise=np.zeros(3), settings={"n_random": 1})
    v = VulnerabilityResult.from_dict(rep.to_dict())
    s = rep.summary()
    assert v.n == 3 and v.eps == 0.1
    assert v.rho_adv == pytest.approx(s["rho_adv"]) and v.ratio == pytest.approx(s["ratio"])
    assert v.bound_model == pytest.approx(6.0) and v.ratio_within_model_bound is True and v.settings == {"n_random": 1}
    assert v.ratios[1] is None  # NaN is written as null and read as "not recorded", never 0
    bounds, ratios = v.per_sample_pairs()
    assert bounds == pytest.approx([4.0, 6.0]) and ratios == pytest.approx([2.0, 6.0])
    with pytest.raises(ConfigError, match="not a vulnerability result"):
        VulnerabilityResult.from_dict({"schema": "snnrobust.sparsity/1"})


# -- replicates and paired verdicts ------------------------------------------------------------
def replicated_study(avg_robust: list[int], max_robust: list[int], n: int = 200) -> dict:
    """make_study with one replicate per entry of the lists (seed 10 + r): reliable robust
    accuracy k/n of avg-pool and max-pool per replicate (per-sample records included), clean
    accuracy 190 of n for both (per-image records included)."""
    study = make_study()
    base = {m["label"]: m for m in study["models"]}
    models, evaluations = [], []
    for r, (ka, kb) in enumerate(zip(avg_robust, max_robust)):
        for label, k in (("avg-pool", ka), ("max-pool", kb)):
            models.append({**base[label], "replicate": r, "seed": 10 + r, "clean_accuracy": rate(190, n),
                           "clean_correct": "1" * 190 + "0" * (n - 190)})
            evaluations.append({"model": label, "replicate": r, "seed": 10 + r, "protocol": "reliable",
                                "weak": False, "result": evaluation(190, k, n, diagnostics=[diag("x", "PASS")])})
    study.update(models=models, evaluations=evaluations, sparsity=[], vulnerability=[],
                 claims=[{"id": "luu-robust", "seed": "000", "text": "Average pooling lowers robustness.",
                          "checks": [{"metric": "robust_accuracy", "protocol": "reliable", "expect": "less",
                                      "a": "avg-pool", "b": "max-pool"}]}])
    return study


def test_paired_verdict_clear_difference_holds_and_fails():
    study = replicated_study([40, 42, 38], [120, 118, 125])
    c = claim_verdict(study, study["claims"][0])
    check = c.checks[0]
    assert check.outcome == HOLDS and c.verdict == REPRODUCED
    # d_r = (40-120, 42-118, 38-125) / 200 = (-0.400, -0.380, -0.435)
    assert check.paired.across.diffs == pytest.approx((-0.400, -0.380, -0.435))
    assert check.paired.across.mean == pytest.approx(-0.405) and check.paired.interval[1] < 0
    # pooled McNemar: in each replicate the per-sample records put avg's robust images inside max's
    assert check.paired.test.n == 600 and check.paired.test.a_only == 0 and check.paired.test.b_only == 243
    assert "paired difference -40.5 points" in c.explanation and "across 3 seeds" in c.explanation
    assert "McNemar over 3 seeds x 200 images" in c.explanation and "exact p < 0.0001" in c.explanation
    assert "per seed: 20.0, 21.0, 19.0" in c.explanation
    # the opposite expectation fails on the same numbers
    study["claims"][0]["checks"][0]["expect"] = "greater"
    c = claim_verdict(study, study["claims"][0])
    assert c.checks[0].outcome == FAILS and c.verdict == CONTRADICTED


def test_paired_verdict_null_difference_is_inconclusive_with_replicates_needed():
    from snnrobust.analysis.paired import replicates_needed

    # d = (-1, +5, -2) / 200 = (-0.005, 0.025, -0.010): the interval includes zero
    study = replicated_study([100, 104, 98], [101, 99, 100])
    c = claim_verdict(study, study["claims"][0])
    check = c.checks[0]
    assert check.outcome == INCONCLUSIVE and c.verdict == CLAIM_INCONCLUSIVE
    lo, hi = check.paired.interval
    assert lo < 0 < hi
    need = replicates_needed(check.paired.across.mean, check.paired.across.sd)
    assert need > 3 and f"would take about {need} replicates" in c.explanation
    assert "interval of the paired difference includes zero" in c.explanation


def test_one_replicate_falls_back_to_the_per_sample_test_and_old_results_to_intervals():
    study = replicated_study([100], [104])
    c = claim_verdict(study, study["claims"][0])
    check = c.checks[0]
    assert check.outcome == INCONCLUSIVE and check.paired.across is None and check.paired.test is not None
    assert "one replicate, so no across-seed interval" in c.explanation
    assert "paired test images (from the observed discordance rate 2.0%)" in c.explanation
    # a decisive per-sample difference with one replicate holds on McNemar's interval
    clear = replicated_study([40], [120])
    assert claim_verdict(clear, clear["claims"][0]).checks[0].outcome == HOLDS
    # results without per-sample records and one replicate: the unpaired interval rule, as before
    for e in clear["evaluations"]:
        e["result"]["worst_case"]["per_sample"] = []
    check = claim_verdict(clear, clear["claims"][0]).checks[0]
    assert check.paired is None and check.outcome == HOLDS and "paired" not in check.sentence


def test_report_shows_per_seed_values_and_dots(tmp_path):
    study = replicated_study([40, 42, 38], [120, 118, 125])
    study["replicates"] = 3
    paths = write_report(study, tmp_path)
    md = Path(paths["markdown"]).read_text()
    assert "20.0% [" in md and "across 3 seeds (per seed: 20.0, 21.0, 19.0)" in md
    assert "across 3 seeds (per seed: 60.0, 59.0, 62.5)" in md
    assert "avg-pool (replicate 2, seed 12)" in md  # per-evaluation sections name replicate and seed
    assert (tmp_path / "figures" / "per_seed.png").stat().st_size > 1000
    assert "paired difference a - b (95 % CI); McNemar p" in md and "-40.5 points" in md
    html = Path(paths["html"]).read_text()
    assert "across 3 seeds (per seed: 20.0, 21.0, 19.0)" in html and html.count("<img") >= 2


def test_not_less_is_a_non_inferiority_test_with_a_margin():
    from snnrobust.report.verdicts import decide_interval

    # the rule on intervals of a - b: holds above -m, fails wholly below -m, else inconclusive
    assert decide_interval(-0.04, 0.02, "not-less", 0.05) == HOLDS
    assert decide_interval(-0.20, -0.06, "not-less", 0.05) == FAILS
    assert decide_interval(-0.08, -0.01, "not-less", 0.05) == INCONCLUSIVE
    assert decide_interval(-0.08, -0.01, "not-less", 0.10) == HOLDS
    # "avg-pool is as robust as max-pool": per-seed robust 100-104 of 200 against 99-101 (d within +-2.5 points)
    study = replicated_study([100, 104, 98], [101, 99, 100])
    check = study["claims"][0]["checks"][0]
    check.update(expect="not-less")
    c = claim_verdict(study, study["claims"][0])
    assert c.checks[0].outcome == HOLDS and c.verdict == REPRODUCED
    assert "avg-pool is as high as max-pool (within 5 points), as claimed" in c.explanation
    # with a 1-point margin the same interval (lower end about -3.7 points) cannot show it
    check.update(margin=0.01)
    c = claim_verdict(study, study["claims"][0])
    assert c.checks[0].outcome == INCONCLUSIVE and "neither shown nor refuted" in c.explanation
    assert "replicates" in c.explanation
    # 40 of 200 against 120 of 200: lower by 40 points, far past the margin
    clear = replicated_study([40, 42, 38], [120, 118, 125])
    clear["claims"][0]["checks"][0].update(expect="not-less")
    c = claim_verdict(clear, clear["claims"][0])
    assert c.checks[0].outcome == FAILS and c.verdict == CONTRADICTED
    assert "lower than max-pool by more than 5 points" in c.explanation
    from snnrobust.report.verdicts import expectation_text

    assert expectation_text(c.checks[0]) == "a at least b - 5 points"


def test_recipe_claims_are_validated_on_load(tmp_path):
    import yaml

    from snnrobust.studies.recipes import RECIPE_DIR, load_recipe

    d = yaml.safe_load((RECIPE_DIR / "pooling-tradeoff.yaml").read_text())
    d["claims"][0]["checks"][0]["expect"] = "bigger"
    p = tmp_path / "r.yaml"
    p.write_text(yaml.safe_dump(d))
    with pytest.raises(ConfigError, match="is not one of greater, less, not-less"):
        load_recipe(str(p))
    d["claims"][0]["checks"][0].update(expect="not-less", margin=5)
    p.write_text(yaml.safe_dump(d))
    with pytest.raises(ConfigError, match="margin must be a fraction"):
        load_recipe(str(p))
