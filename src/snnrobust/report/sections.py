"""The report's sections, built from a study as renderer-neutral blocks (:mod:`.doc`).

The study dict is read once (:func:`read.load`): every section works on the typed results
(:class:`~snnrobust.evaluation.results.EvaluationResult`, :class:`~snnrobust.analysis.sparsity.SparsityReport`,
:class:`~snnrobust.analysis.results.VulnerabilityResult`), never on their JSON.

Section ids (stable anchors in the HTML, headings in markdown), in order: ``summary``,
``setup``, ``threat-models``, ``accuracy``, ``eps-curves``, ``sparsity``, ``tradeoff``,
``diagnostics``, ``vulnerability``, ``model-verdicts``, ``claim-verdicts``.
Anything the study does not contain renders as "not measured" instead of failing.

Replicates: where a model was trained with several seeds, the summary tables show the mean
over seeds with its across-seed 95 % t interval and every seed's value, the summary's figure
and the trade-off scatter draw each seed as a dot beside the mean, and per-evaluation
sections name the replicate and seed of each result. Per-operation sparsity figures show
replicate 0 (the pixel-level zero fraction of every seed is in the summary).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Optional

from . import figures as F
from . import read as R
from ..environment import machine_label
from ..evaluation.results import AttackRecord, EvaluationResult
from .doc import Badge, Bullets, Callout, Code, Figure, Heading, Para, Section, Table, badge
from .read import Study
from .verdicts import ROBUST_FRACTION, ClaimVerdict, ModelVerdict, all_verdicts, expectation_text

SECTION_IDS = ("summary", "setup", "threat-models", "accuracy", "eps-curves", "sparsity", "tradeoff",
               "diagnostics", "vulnerability", "model-verdicts", "claim-verdicts")

NOT_MEASURED = "not measured"


# -- small formatting helpers ------------------------------------------------------------
def _fmt(v: Any, spec: str = ".3g") -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return format(v, spec) if math.isfinite(v) else "-"
    if v is None:
        return "-"
    if isinstance(v, (dict, list, tuple)):
        s = _compact(v)
        return s if len(s) <= 200 else s[:197] + "..."
    return str(v)


def _compact(v: Any) -> str:
    """Nested numbers for a table cell: rates as ``25.0% (2/8)``, floats with 3 digits."""
    if isinstance(v, dict):
        if "k" in v and "n" in v and R.rate(v) is not None:
            return f"{100 * R.rate(v).value:.1f}% ({v['k']}/{v['n']})"
        return "{" + ", ".join(f"{k}: {_compact(x)}" for k, x in v.items()) + "}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_compact(x) for x in v) + "]"
    if isinstance(v, float):
        return format(v, ".3g") if math.isfinite(v) else "-"
    return "-" if v is None else str(v)


def _kv(d: dict, keys: Optional[list[str]] = None, skip: tuple = ()) -> str:
    keys = keys if keys is not None else list(d)
    return ", ".join(f"{k}={_fmt(d[k])}" for k in keys if k in d and k not in skip and d[k] not in (None, {}, []))


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"


def _protocol_badge(study: Study, protocol: str) -> Badge:
    weak = R.protocol_is_weak(study, protocol)
    return badge("weak" if weak else "reliable") if weak is not None else badge("unknown")


def _protocol_cell(study: Study, protocol: str) -> list:
    b = _protocol_badge(study, protocol)
    return [b] if b.text == protocol else [protocol, " ", b]


def _protocols(study: Study) -> list[str]:
    out: list[str] = []
    for e in R.evaluations(study):
        p = e.protocol
        if p not in out:
            out.append(p)
    return out


def _rate_cell(r: Any) -> str:
    return R.pct(R.estimate(r), "-")


def _robust_cell(res: EvaluationResult) -> Any:
    """An evaluation's robust accuracy, with a red INCOMPLETE badge when an attack crashed."""
    text = R.pct(R.robust_accuracy(res)[0], "-")
    return [text, " ", badge("INCOMPLETE")] if not res.complete else text


def _robust_seeds_cell(study: Study, label: str, protocol: str) -> Any:
    """Robust accuracy of every replicate of ``label`` under ``protocol``: mean, across-seed
    interval and per-seed values (one seed: its Wilson interval); INCOMPLETE when any is."""
    evs = R.evaluations(study, model=label, protocol=protocol)
    if not evs:
        return NOT_MEASURED
    text = R.per_seed_robust(study, label, protocol).text("-")
    return [text, " ", badge("INCOMPLETE")] if any(not e.result.complete for e in evs) else text


def _zero_fraction_cell(study: Study, label: str) -> str:
    sv = R.per_seed_zero_fraction(study, label)
    if not sv.n:
        return NOT_MEASURED
    if sv.n == 1:
        izf = sv.values[0][2]
        return f"{100 * izf.value:.1f}%" + (f" ± {100 * izf.se:.1f}" if izf.se is not None else "")
    m = sv.summary()
    return (f"{100 * m.value:.1f}% [{100 * m.lo:.1f}, {100 * m.hi:.1f}] across {sv.n} seeds (per seed: "
            + ", ".join(f"{100 * e.value:.1f}" for _, _, e in sv.values) + ")")


def _seed_column(label: str, color: str, sv: R.SeedValues) -> Optional[F.SeedColumn]:
    m = sv.summary()
    if m is None:
        return None
    return F.SeedColumn(label, color, [e.value for _, _, e in sv.values], m.value, m.lo, m.hi)


def seed_figure(study: Study, colors: dict[str, str]) -> Optional[Figure]:
    """Clean and robust accuracy of every model, each training seed a dot beside the mean (None
    when no model has two seeds: the summary table and the trade-off scatter then say it all)."""
    if R.replicate_count(study) < 2:
        return None
    labels = R.model_labels(study)
    panels = [F.SeedPanel("clean accuracy", [c for c in (_seed_column(lab, colors.get(lab, "#333333"),
                                                                      R.per_seed_clean(study, lab))
                                                         for lab in labels) if c])]
    for p in _protocols(study):
        cols = [_seed_column(lab, colors.get(lab, "#333333"), R.per_seed_robust(study, lab, p)) for lab in labels]
        panels.append(F.SeedPanel(f"robust accuracy, {p}", [c for c in cols if c]))
    n = R.replicate_count(study)
    png = F.seed_dots(panels, f"Per-seed values ({n} training seed{'s' if n > 1 else ''} per model)")
    if not png:
        return None
    return Figure("per_seed", png, "Each small dot is one independently seeded training run (replicate) of the model; "
                                   "the diamond is their mean with the 95 % t interval across seeds (with a single "
                                   "seed: its Wilson interval), so the spread between seeds is visible beside the "
                                   "mean.", "per-seed clean and robust accuracy of every model, dots beside the mean")


# -- summary -------------------------------------------------------------------------------
def summary_section(study: Study, verdicts: list[ModelVerdict], claims: list[ClaimVerdict]) -> Section:
    s = Section("summary", "Summary at a glance")
    head = R.text(study.get("description"))
    if head:
        s.add(Para(head))
    broken = [f"{e.model} / {e.protocol}: {why}" for e in R.evaluations(study)
              for why in e.result.incomplete_reasons()]
    if broken:
        s.add(Callout("INCOMPLETE EVALUATIONS — an attack crashed and left samples unattacked; these robust "
                      "accuracies are upper bounds, no verdict rests on them; re-run the study to retry them",
                      broken, "bad"))
    lost = R.unreadable(study)
    if lost:
        s.add(Callout("UNREADABLE RESULTS — these stored results could not be read and are missing from every "
                      "table; no verdict rests on them; re-run the study to recompute them",
                      [u.line() for u in lost], "bad"))
    protocols = _protocols(study)
    headers = ["model", "clean accuracy"]
    for p in protocols:
        tm = R.evaluations(study, protocol=p)[0].result.threat_model
        weak = " weak protocol," if R.protocol_is_weak(study, p) else ""
        headers.append(f"robust accuracy, {p} ({weak} {tm.label()})".replace("( ", "("))
    headers += ["input-gradient zero fraction", "diagnostics", "verdict"]
    rows = []
    by_model = {v.model: v for v in verdicts}
    for lab in R.model_labels(study):
        row: list = [lab, R.per_seed_clean(study, lab).text()]
        for p in protocols:
            row.append(_robust_seeds_cell(study, lab, p))
        row.append(_zero_fraction_cell(study, lab))
        statuses = [d.status for e in R.evaluations(study, model=lab) for d in e.result.diagnostics]
        if statuses:
            row.append(_status_counts(statuses))
        else:
            row.append(NOT_MEASURED)
        v = by_model.get(lab)
        row.append(badge(v.status) if v else "-")
        rows.append(row)
    if rows:
        s.add(Table(headers, rows, "Accuracies with 95 % Wilson intervals (one training seed), or, with several "
                                   "seeds, the mean over seeds with its 95 % t interval across seeds and each seed's "
                                   "value; robust accuracy is the per-sample worst case over the protocol's attacks. "
                                   "Zero fraction: exactly-zero entries of the loss gradient w.r.t. the input pixels "
                                   "(mean ± SE over samples; across seeds as above)."))
        fig = seed_figure(study, F.model_colors(R.model_labels(study)))
        if fig:
            s.add(fig)
    else:
        s.add(Para("No models in this study."))
    if claims:
        s.add(Heading("Claims of the papers"))
        s.add(Bullets([[badge(c.verdict), f" {c.id} ({c.paper}): {c.claim}"] for c in claims]))
    return s


def _status_counts(statuses: list[str]) -> list:
    out: list = []
    for st in ("WARN", "PASS", "SKIP"):
        n = statuses.count(st)
        if n:
            out.extend([badge(st), f" ×{n} "])
    return out


# -- setup ---------------------------------------------------------------------------------
_MODEL_KEYS = ["name", "T", "width", "in_channels", "image_size", "num_classes", "spiking", "encoder",
               "encoder_options", "neuron", "leak", "threshold", "reset", "v_reset", "detach_reset", "surrogate",
               "arch"]
_TRAIN_KEYS = ["epochs", "batch_size", "optimizer", "lr", "weight_decay", "momentum", "schedule", "seed",
               "augment", "max_train_samples", "device"]


def made_by(model_entry: dict) -> str:
    """How a study's model was made, in a few words: trained by BPTT, an ANN, or the chain of
    Sharmin et al. 2020's ANN -> converted SNN -> BPTT fine-tuning from its provenance."""
    steps = [st for st in R.as_list(model_entry.get("provenance")) if isinstance(st, dict)]
    if not steps:
        method = R.text(R.as_dict(model_entry.get("train_config")).get("method"), "bptt")
        return "ANN (ReLU twin)" if method == "ann" else "trained by BPTT"
    words = []
    for st in steps:
        kind = st.get("step")
        if kind == "ann-training":
            words.append("ANN trained")
        elif kind == "conversion":
            words.append(f"converted ({st.get('method', '?')}, T={st.get('T', '?')})")
        elif kind == "hybrid-fine-tuning":
            neuron = str(st.get("neuron", "?")).upper()
            leak = f" {st['leak']:g}" if isinstance(st.get("leak"), (int, float)) and neuron == "LIF" else ""
            words.append(f"fine-tuned by BPTT (T={st.get('T', '?')}, {neuron}{leak}, thresholds x"
                         f"{st.get('threshold_scale', '?')}, {st.get('epochs_done', '?')} epochs)")
        elif kind == "warm-start":
            words.append(f"fine-tuned from a trained checkpoint (defense {st.get('defense', '?')}, "
                         f"{st.get('epochs_done', '?')} epochs)")
        else:
            words.append(str(kind))
    return " → ".join(words)


def setup_section(study: Study, colors: dict[str, str]) -> Section:
    s = Section("setup", "Setup")
    facts = [f"study: {R.text(study.get('study'), 'unnamed')}", f"size: {R.text(study.get('size'), '-')}"]
    if R.text(study.get("created")):
        facts.append(f"created: {study.get('created')}")
    if R.num(study.get("seconds")) is not None:
        facts.append(f"run time: {study.get('seconds') / 60:.1f} min")
    if R.integer(study.get("replicates")) is not None:
        facts.append(f"replicates: {study.get('replicates')} independently seeded training run(s) per model, "
                     "all evaluated on the same test images")
    if study.get("machine") is not None:
        facts.append(f"machine: {machine_label(R.as_dict(study.get('machine')))} (the same seed reproduces these "
                     "numbers exactly only on the same CPU type, thread count and torch build)")
    s.add(Bullets(facts))
    s.add(Heading("Dataset and split"))
    ds = R.as_dict(study.get("dataset"))
    if ds:
        split = R.as_dict(ds.get("split"))
        items = [f"{ds.get('name', '?')}: {ds.get('n_train', '?')} training and {ds.get('n_test', '?')} test images"
                 + (f", {ds.get('in_channels')}×{ds.get('image_size')}×{ds.get('image_size')}, "
                    f"{ds.get('num_classes')} classes" if ds.get("image_size") else "")]
        if ds.get("source"):
            items.append(f"source: {ds['source']}")
        if split:
            items.append("split: " + _kv(split))
        if ds.get("augment"):
            items.append(f"training augmentation: {ds['augment']}")
        s.add(Bullets(items))
    else:
        s.add(Para(f"Dataset: {NOT_MEASURED} (the study recorded no dataset description)."))
    s.add(Heading("Models"))
    models = R.models(study)
    if models:
        rows = []
        for m in models:
            mc, tc = R.as_dict(m.get("model_config")), R.as_dict(m.get("train_config"))
            sha = R.text(m.get("checkpoint_sha256"))
            name = m["label"] + R.tag(study, m["label"], R.integer(m.get("replicate")) or 0, R.integer(m.get("seed")))
            rows.append([name, R.text(m.get("group"), "-"), made_by(m), _kv(mc, _MODEL_KEYS) or "-",
                         _kv(tc, _TRAIN_KEYS) or "-",
                         R.pct(R.rate(m.get("clean_accuracy"))),
                         (R.text(m.get("checkpoint"), "-") + (f" (sha256 {sha[:12]}…)" if sha else ""))])
        s.add(Table(["model", "group", "made by", "model config", "training config", "clean accuracy (95 % CI)",
                     "checkpoint"], rows))
        for m in models:
            cfg = {"model_config": m.get("model_config"), "train_config": m.get("train_config")}
            name = m["label"] + R.tag(study, m["label"], R.integer(m.get("replicate")) or 0, R.integer(m.get("seed")))
            s.add(Code(json.dumps(cfg, indent=2, default=str, sort_keys=True), f"full configuration of {name}",
                       "json"))
    else:
        s.add(Para(f"Models: {NOT_MEASURED}."))
    s.add(Heading("Training curves"))
    curves = {m["label"]: [r for r in R.as_list(m.get("train_metrics")) if isinstance(r, dict)] for m in models
              if not R.integer(m.get("replicate"))}  # replicate 0's: one curve per model
    png = F.training_curves(curves, colors)
    if png:
        s.add(Figure("training_curves", png, "Training loss and test accuracy per epoch.",
                     "training loss and test accuracy per epoch for each model"))
    else:
        s.add(Para(f"Training curves: {NOT_MEASURED} (no per-epoch metrics recorded)."))
    return s


# -- threat models -------------------------------------------------------------------------
def _estimators(result: EvaluationResult) -> list[str]:
    out = []
    for a in result.attacks:
        lab = a.estimator_label if a.estimator else ""
        if lab and lab not in out:
            out.append(lab)
    return out


def _attack_settings(a: AttackRecord) -> str:
    # the attack's settings (Attack.to_dict()) are a free-form mapping by design
    return _kv(a.attack, skip=("name",))


def threat_section(study: Study) -> Section:
    s = Section("threat-models", "Threat models")
    evs = R.evaluations(study)
    if not evs:
        return s.add(Para(f"Threat models: {NOT_MEASURED} (no evaluation was run)."))
    s.add(Para("ε is in pixel units of the [0, 1] image before encoding unless a row says SPIKE TENSOR. "
               "Models are in eval mode and reset before every forward pass unless a replication option says "
               "otherwise. Weak protocols replicate a seed paper's settings; reliable ones are per-sample worst "
               "cases over many estimators and attacks."))
    flagged = []
    for e in evs:
        for flag in R.replication_flags(e.result):
            flagged.append(f"{e.model}{R.tag(study, e.model, e.replicate, e.seed)} / {e.protocol}: {flag}")
    if flagged:
        s.add(Callout("REPLICATION OPTIONS IN FORCE — these settings inflate robustness and are not a valid "
                      "input-level threat model; they only reproduce a seed paper's code", flagged, "bad"))
    rows = []
    for e in evs:
        res = e.result
        t = res.threat_model
        flags = R.replication_flags(res)
        rows.append([
            e.model + R.tag(study, e.model, e.replicate, e.seed), _protocol_cell(study, e.protocol), t.label(),
            {"linf": "L∞", "l2": "L2", "l0": "L0", "retime": "retiming"}.get(t.norm, t.norm), R.format_eps(t.eps),
            badge("SPIKE TENSOR") if t.perturb == "spikes" else ("event frames" if t.domain == "event-frames"
                                                                  else "pixels"),
            badge("TRAIN (replication)") if t.bn_mode == "train" else "eval",
            ", ".join(_estimators(res)) or "-",
            _fmt(res.eot), _fmt(res.vote), _fmt(res.clean.n), res.budget.name or "-",
            [badge("WARN"), " " + "; ".join(flags)] if flags else "none",
        ])
    s.add(Table(["model", "protocol", "threat model", "norm", "ε", "perturbation on", "BatchNorm while crafting",
                 "gradient estimators", "EOT samples", "vote passes", "samples", "budget preset",
                 "replication options"], rows))
    for p in _protocols(study):
        seen: dict[str, list] = {}
        for e in R.evaluations(study, protocol=p):
            for a in e.result.attacks:
                if a.id not in seen:
                    seen[a.id] = [a.id, R.text(a.attack.get("name"), "-"), a.estimator_label,
                                  _fmt(a.steps), _fmt(a.restarts), _fmt(a.eot), _attack_settings(a) or "-"]
        if seen:
            s.add(Heading(f"Attacks of the {p} protocol"))
            s.add(Table(["attack id", "attack", "estimator", "steps", "restarts", "EOT", "all settings"],
                        list(seen.values())))
    return s


# -- accuracy ------------------------------------------------------------------------------
def accuracy_section(study: Study) -> Section:
    s = Section("accuracy", "Clean and robust accuracy per attack")
    evs = R.evaluations(study)
    if not evs:
        return s.add(Para(f"Robust accuracy: {NOT_MEASURED} (no evaluation was run)."))
    s.add(Para("Robust accuracy counts samples still correct after the attack over all samples; attack success "
               "rate counts flipped samples over the initially correct ones. Brackets: 95 % Wilson intervals. "
               "Scope 'cumulative' means the attack ran only on samples earlier attacks had not broken."))
    for e in evs:
        res = e.result
        p = e.protocol
        s.add(Heading(f"{e.model}{R.tag(study, e.model, e.replicate, e.seed)} — {p} "
                      f"({'weak' if R.evaluation_is_weak(study, e) else 'reliable'} protocol), "
                      f"{res.threat_model.label()}"))
        broken = res.incomplete_reasons()
        if broken:
            s.add(Callout("INCOMPLETE — the worst case below is an upper bound", broken, "bad"))
        rows = [["clean (no attack)", "-", "-", "-", "-", _rate_cell(res.clean), "-", "-"]]
        for a in res.attacks:
            aid = [a.id, " ", badge("INCOMPLETE"), f" failed on {_fmt(a.n_not_attacked)} samples: {a.error}"] \
                if a.error else a.id
            rows.append([aid, a.estimator_label, _fmt(a.steps), _fmt(a.restarts), _fmt(a.eot),
                         _rate_cell(a.robust_accuracy), _rate_cell(a.attack_success_rate), a.scope or "-"])
        wc = res.worst_case
        _, how = R.robust_accuracy(res)
        rows.append([f"WORST CASE ({how})", "-", "-", "-", "-", _robust_cell(res),
                     _rate_cell(wc.attack_success_rate), "per sample"])
        s.add(Table(["attack", "estimator", "steps", "restarts", "EOT", "robust accuracy (95 % CI)",
                     "attack success rate (95 % CI)", "scope"], rows))
        broken = wc.broken_by
        if broken:
            n = res.clean.n
            per = wc.per_sample
            extra = []
            if per:
                extra.append(["misclassified without attack", _fmt(sum(1 for v in per if v == "clean"))])
                extra.append(["robust to every attack", _fmt(sum(1 for v in per if v is None))])
            s.add(Table(["broken first by", "samples"],
                        [[k, _fmt(v)] for k, v in sorted(broken.items(), key=lambda kv: -(R.num(kv[1]) or 0))] + extra,
                        f"Which attack broke each sample first (of n = {_fmt(n)}); attacks later in the suite only "
                        f"ran on samples still robust."))
        notes = [x for x in res.notes if isinstance(x, str)]
        if notes:
            s.add(Bullets(["note: " + x for x in notes]))
    return s


# -- eps curves ----------------------------------------------------------------------------
def _curve_points(res: EvaluationResult) -> list[tuple[float, R.Estimate]]:
    pts = []
    for p in res.eps_curve:
        eps, est = R.num(p.eps), R.estimate(p.robust_accuracy)
        if eps is not None and est is not None:
            pts.append((eps, est))
    if not pts:
        eps, (est, _) = R.num(res.threat_model.eps), R.robust_accuracy(res)
        if eps is not None and est is not None:
            pts.append((eps, est))
    if pts and not any(e == 0 for e, _ in pts):
        clean = R.estimate(res.clean)
        if clean is not None:
            pts.append((0.0, clean))
    return sorted(pts, key=lambda t: t[0])


def eps_section(study: Study, colors: dict[str, str]) -> Section:
    s = Section("eps-curves", "Robust accuracy against ε")
    protocols = _protocols(study)
    groups: dict[tuple[str, str], list] = {}
    table = []
    for e in R.evaluations(study):
        res = e.result
        pts = _curve_points(res)
        if len(pts) < 2:
            continue
        t = res.threat_model
        ls, mk = F.style_for(protocols.index(e.protocol))
        label = f"{e.model}{R.tag(study, e.model, e.replicate, e.seed)} · {e.protocol}"
        groups.setdefault((t.norm, t.perturb), []).append(F.Curve(
            label, colors.get(e.model, "#333333"), ls, mk, [p for p, _ in pts], [x.value for _, x in pts],
            [x.lo for _, x in pts], [x.hi for _, x in pts]))
        scale, _ = R.eps_units(t.norm, t.perturb)
        table.append([e.model + R.tag(study, e.model, e.replicate, e.seed), e.protocol,
                      "; ".join(f"ε={_fmt(eps * scale, '.3g')}: {x.text()}" for eps, x in pts)])
    if not groups:
        return s.add(Para(f"ε curves: {NOT_MEASURED} (no evaluation recorded robust accuracy at more than one ε)."))
    for (norm, perturb), curves in groups.items():
        scale, xlabel = R.eps_units(norm, perturb)
        where = "SPIKE TENSOR (replication)" if perturb == "spikes" else "pixels"
        png = F.eps_curves(curves, xlabel, scale,
                           f"Robust accuracy vs ε ({'L∞' if norm == 'linf' else 'L2'}, on {where})")
        if png:
            s.add(Figure(f"eps_curve_{norm}_{perturb}", png,
                         f"Robust accuracy against the attack budget ε ({'L∞' if norm == 'linf' else 'L2'}, "
                         f"perturbation on {where}); one line per model and protocol.",
                         "robust accuracy against epsilon for each model and protocol"))
    s.add(Table(["model", "protocol", "robust accuracy at each ε (units as on the plot's axis)"], table))
    return s


# -- sparsity ------------------------------------------------------------------------------
_SOURCE_TEXT = {"attack": "gradient of the loss of an FGSM step, eval mode",
                "train": "gradient of the training loss, train mode"}


def sparsity_section(study: Study, colors: dict[str, str]) -> Section:
    s = Section("sparsity", "Per-operation gradient sparsity")
    entries = R.sparsity_entries(study)
    if not entries:
        return s.add(Para(f"Gradient sparsity: {NOT_MEASURED} (no sparsity analysis in this study)."))
    s.add(Para("For each operation in network order: the fraction of exactly-zero entries of the gradient that "
               "flows back through it to its input, and that gradient's L2 norm, averaged over samples (± standard "
               "error). Exact zeros come from routing (max pooling passes each window's gradient to one input) and "
               "from hard or detached resets. 'input pixels' is the gradient an attacker sees."))
    rows = []
    for e in entries:
        rep = e.result
        izf, _ = R.input_zero_fraction(rep)
        rows.append([e.model + R.tag(study, e.model, e.replicate, e.seed), e.source, R.text(rep.estimator, "-"),
                     _fmt(rep.n_samples), "-" if izf is None else f"{100 * izf.value:.2f}%"
                     + (f" ± {100 * izf.se:.2f}" if izf.se is not None else ""),
                     _fmt(R.num(rep.input_norm)) + (f" ± {_fmt(R.num(rep.input_norm_se), '.2g')}"
                                                    if R.num(rep.input_norm_se) is not None else ""),
                     _fmt(len(R.sparsity_ops(rep)))])
    s.add(Table(["model", "loss source", "gradient estimator", "samples", "input-pixel zero fraction (± SE)",
                 "input-pixel gradient L2 norm (± SE)", "operations"], rows))
    sources = []
    for e in entries:
        if e.source not in sources:
            sources.append(e.source)
    for src in sources:
        series = [e for e in R.sparsity_entries(study, source=src) if e.replicate == 0]
        for metric in F.SPARSITY_METRICS:
            ops_series = []
            for e in series:
                rep, pix = e.result, None
                if metric == "in_zero_frac" and R.num(rep.input_zero_frac) is not None:
                    pix = (rep.input_zero_frac, R.num(rep.input_zero_frac_se))
                elif metric == "in_norm" and R.num(rep.input_norm) is not None:
                    pix = (rep.input_norm, R.num(rep.input_norm_se))
                ops_series.append(F.OpSeries(e.model, colors.get(e.model, "#333333"),
                                             R.integer(rep.n_samples), R.sparsity_ops(rep), pix))
            png = F.sparsity_bars(ops_series, metric, _SOURCE_TEXT.get(src, f"source {src}"))
            if png:
                title = F.SPARSITY_METRICS[metric][0]
                s.add(Figure(f"sparsity_{_slug(src)}_{metric}", png,
                             f"{title} ({_SOURCE_TEXT.get(src, src)}), models side by side.",
                             f"bar chart: {title.lower()} per operation"))
    for e in entries:
        ops = R.sparsity_ops(e.result)
        if not ops or e.replicate != 0:
            continue
        rows = []
        for r in ops:
            def z(key):
                v, se = R.num(getattr(r, key)), R.num(getattr(r, key + "_se"))
                return "-" if v is None else f"{100 * v:.1f}%" + (f" ± {100 * se:.1f}" if se is not None else "")

            def nrm(key):
                v, se = R.num(getattr(r, key)), R.num(getattr(r, key + "_se"))
                return "-" if v is None else f"{v:.3g}" + (f" ± {se:.2g}" if se is not None else "")

            wd = R.num(r.weight_density)
            rows.append([_fmt(r.index), r.name, R.text(r.kind, "-"), z("in_zero_frac"), z("out_zero_frac"),
                         nrm("in_norm"), nrm("out_norm"), "-" if wd is None else f"{100 * wd:.1f}%"])
        s.add(Table(["#", "operation", "kind", "input-gradient zeros", "output-gradient zeros", "input-gradient norm",
                     "output-gradient norm", "weight-gradient density"], rows,
                    f"{e.model}, {e.source} loss: per-operation numbers (mean ± SE)", fold=True))
    return s


# -- trade-off -----------------------------------------------------------------------------
def tradeoff_section(study: Study, colors: dict[str, str]) -> Section:
    s = Section("tradeoff", "Clean vs robust accuracy trade-off")
    protocols = _protocols(study)
    points, rows = [], []
    pairs = list(dict.fromkeys((e.model, e.protocol) for e in R.evaluations(study)))
    for lab, p in pairs:
        evs = R.evaluations(study, model=lab, protocol=p)
        cleans = R.per_seed_clean(study, lab).by_replicate()
        seeds = []  # (clean, robust) of each replicate that has both
        for e in evs:
            c = cleans.get(e.replicate) or R.estimate(e.result.clean)
            r, _ = R.robust_accuracy(e.result)
            if c is not None and r is not None:
                seeds.append((c.value, r.value))
        clean_sv, robust_sv = R.per_seed_clean(study, lab), R.per_seed_robust(study, lab, p)
        clean = clean_sv.summary() or R.estimate(evs[0].result.clean)
        robust = robust_sv.summary()
        if clean is None or robust is None:
            continue
        _, mk = F.style_for(protocols.index(p))
        points.append(F.TradeoffPoint(f"{lab} · {p}", colors.get(lab, "#333333"), mk, (clean.value, clean.lo, clean.hi),
                                      (robust.value, robust.lo, robust.hi), seeds if len(seeds) > 1 else []))
        rows.append([lab, p, clean_sv.text() if clean_sv.n else clean.text(), _robust_seeds_cell(study, lab, p),
                     evs[0].result.threat_model.label()])
    png = F.tradeoff(points, "Clean accuracy vs robust accuracy (one point per model and protocol)")
    if not png:
        return s.add(Para(f"Trade-off: {NOT_MEASURED} (no model has both a clean and a robust accuracy)."))
    s.add(Figure("tradeoff", png, "Each point is one model under one protocol: x = clean accuracy, y = robust "
                                  "accuracy (worst case over the protocol's attacks); with several training seeds "
                                  "the marker is their mean with across-seed intervals and each seed is a small dot "
                                  "beside it.",
                 "scatter of clean accuracy against robust accuracy"))
    s.add(Table(["model", "protocol", "clean accuracy", "robust accuracy", "threat model"], rows))
    return s


# -- diagnostics ---------------------------------------------------------------------------
def diagnostics_section(study: Study) -> Section:
    s = Section("diagnostics", "Gradient-masking diagnostics")
    evs = [e for e in R.evaluations(study) if e.result.diagnostics]
    if not evs:
        return s.add(Para(f"Masking diagnostics: {NOT_MEASURED} (they run with reliable evaluations only)."))
    s.add(Para("Each check looks for a symptom of gradient masking (Athalye et al. 2018; Carlini et al. 2019). "
               "PASS: no symptom; WARN: the symptom is present, so robust accuracy may be overestimated; SKIP: the "
               "check could not run. A model is never called robust while any check warns."))
    names: list[str] = []
    for e in evs:
        for d in e.result.diagnostics:
            if d.name not in names:
                names.append(d.name)
    matrix = []
    for e in evs:
        by = {d.name: d.status for d in e.result.diagnostics}
        matrix.append([e.model + R.tag(study, e.model, e.replicate, e.seed), e.protocol]
                      + [badge(by[n]) if n in by else "-" for n in names])
    s.add(Table(["model", "protocol"] + names, matrix, "Status of every check, per model and protocol."))
    for e in evs:
        s.add(Heading(f"{e.model}{R.tag(study, e.model, e.replicate, e.seed)} — {e.protocol}"))
        s.add(Table(["check", "status", "summary", "numbers"],
                    [[d.name, badge(d.status), d.summary or "-", _kv(d.numbers) or "-"]
                     for d in e.result.diagnostics]))
    return s


# -- vulnerability -------------------------------------------------------------------------
def vulnerability_section(study: Study, colors: dict[str, str]) -> Section:
    s = Section("vulnerability", "Random vs adversarial vulnerability")
    entries = R.vulnerability_entries(study)
    if not entries:
        return s.add(Para(f"Vulnerability (ρ_rand, ρ_adv): {NOT_MEASURED} (no vulnerability analysis in this study)."))
    s.add(Para("f_y is the true-class probability. ρ_rand = mean |Δf_y| under random sign noise of size ε; ρ_adv = "
               "mean of the largest |Δf_y| found within ε (a lower bound of the maximum). To first order "
               "ρ_adv/ρ_rand ≤ √(2·L0), where L0 counts the non-zero entries of ∇ₓf_y: sparse input gradients force "
               "random noise to be nearly as damaging as the worst case."))
    rows, series = [], []
    for e in entries:
        v = e.result

        def pm(value, se):
            return "-" if value is None else f"{value:.3g}" + (f" ± {se:.2g}" if se is not None else "")

        # the bound check means nothing when the ratio is undefined (f_y never changed)
        within = v.ratio_within_model_bound if v.ratio is not None else None
        rows.append([e.model, R.format_eps(v.eps), _fmt(v.n), pm(v.rho_rand, v.rho_rand_se),
                     pm(v.rho_adv, v.rho_adv_se),
                     "undefined (ρ_rand = 0)" if v.ratio is None and v.rho_rand == 0 else _fmt(v.ratio),
                     "-" if v.l0 is None else f"{v.l0:.1f}"
                     + (f" ({100 * v.l0_fraction:.1f}% of inputs)" if v.l0_fraction is not None else ""),
                     _fmt(v.bound_model),
                     badge("holds") if within is True else badge("fails") if within is False else "-",
                     "-" if v.frac_bound_holds is None else f"{100 * v.frac_bound_holds:.1f}%"])
        bounds, ratios = v.per_sample_pairs()
        series.append(F.VulnerabilitySeries(e.model, colors.get(e.model, "#333333"), bounds, ratios,
                                            v.bound_model, v.ratio))
    s.add(Table(["model", "ε", "samples", "ρ_rand (± SE)", "ρ_adv (± SE)", "ratio ρ_adv/ρ_rand", "mean L0 of ∇ₓf_y",
                 "bound √(2·max L0)", "ratio within bound", "samples within their bound"], rows))
    png = F.vulnerability(series, "Adversarial/random vulnerability ratio against the gradient-sparsity bound")
    if png:
        s.add(Figure("vulnerability", png, "Per-sample ratio of adversarial to random change of f_y against its "
                                           "first-order bound √(2·L0); stars are the models' overall ratios.",
                     "scatter of vulnerability ratio against the sparsity bound"))
    else:
        s.add(Para("No picture: no model has a defined ratio (ρ_rand and ρ_adv are 0 when f_y never changed "
                   "within ε)."))
    return s


# -- verdicts ------------------------------------------------------------------------------
def model_verdict_section(verdicts: list[ModelVerdict]) -> Section:
    s = Section("model-verdicts", "Verdict per model")
    s.add(Para(f"Generated from the numbers. A model is called empirically robust only if its reliable robust accuracy "
               f"(lower end of the 95 % interval) is at least {ROBUST_FRACTION:.0%} of its clean accuracy and every "
               f"masking diagnostic passes; it is called not robust when the reliable robust accuracy is below "
               f"{ROBUST_FRACTION:.0%} of clean accuracy; otherwise robustness is not established. A diagnostic "
               f"WARN always prevents a 'robust' verdict."))
    if not verdicts:
        return s.add(Para("No models in this study."))
    for v in verdicts:
        s.add(Heading(v.model))
        s.add(Para(["verdict: ", badge(v.status)]), Para(v.text))
        s.add(Bullets(list(v.numbers)))
    return s


def claim_verdict_section(claims: list[ClaimVerdict]) -> Section:
    s = Section("claim-verdicts", "Verdict per claim of the papers")
    s.add(Para("Each check compares two models evaluated on the same test images, paired: replicate r of one "
               "with replicate r of the other. With several training seeds it is decided by the 95 % t interval of "
               "the mean per-seed difference across seeds; with one seed, by the 95 % interval of the per-sample "
               "paired difference (McNemar's exact p pooled over every seed and image is cited either way). It "
               "holds when that interval excludes zero on the claimed side, fails when it excludes zero on the "
               "other side, and is inconclusive only when it includes zero - then the sentence says how many "
               "replicates or test images would decide a difference of the observed size (95 % confidence, 80 % "
               "power). Numbers without replicates or per-sample records (e.g. one seed's gradient zero fraction) "
               "are compared unpaired: the check holds when their 95 % intervals do not overlap. A claim is "
               "reproduced when every check holds, holds only under the weak "
               "protocol when a check holds under the paper's protocol but not under the reliable one, is "
               "contradicted when any other check fails, and is inconclusive otherwise."))
    if not claims:
        return s.add(Para("No claim of the papers was checked in this study."))
    for c in claims:
        s.add(Heading(f"{c.id} ({c.paper})"))
        if c.claim:
            s.add(Para(f"Claim: {c.claim}"))
        s.add(Para(["verdict: ", badge(c.verdict)]), Para(c.explanation))
        if c.checks:
            s.add(Table(["metric", "protocol", "expected", "a", "value of a", "b", "value of b",
                         "paired difference a - b (95 % CI); McNemar p", "outcome"],
                        [[r.metric, r.protocol or "-", expectation_text(r), r.a,
                          "not measured" if r.value_a is None else r.text_a(), r.b,
                          "not measured" if r.value_b is None else r.text_b(), _paired_cell(r), badge(r.outcome)]
                         for r in c.checks]))
    return s


def _paired_cell(r) -> str:
    p = r.paired
    if p is None:
        return "unpaired (95 % intervals compared)"
    iv = p.interval
    d = p.difference
    out = "-" if d is None or iv is None else f"{100 * d:+.1f} points [{100 * iv[0]:+.1f}, {100 * iv[1]:+.1f}]"
    out += f" ({len(p.replicates)} seeds)" if p.across is not None else " (one seed, per sample)"
    if p.test is not None:
        out += f"; p = {p.test.p:.2g}" if p.test.p >= 1e-4 else "; p < 0.0001"
    return out


# -- all -----------------------------------------------------------------------------------
def build_sections(study: "dict | Study") -> list[Section]:
    """Every section of the report, in order (ids: :data:`SECTION_IDS`). Every stored result of
    ``study`` is read once, here (:func:`read.load`)."""
    study = R.load(study)
    colors = F.model_colors(R.model_labels(study))
    verdicts, claims = all_verdicts(study)
    return [
        summary_section(study, verdicts, claims),
        setup_section(study, colors),
        threat_section(study),
        accuracy_section(study),
        eps_section(study, colors),
        sparsity_section(study, colors),
        tradeoff_section(study, colors),
        diagnostics_section(study),
        vulnerability_section(study, colors),
        model_verdict_section(verdicts),
        claim_verdict_section(claims),
    ]
