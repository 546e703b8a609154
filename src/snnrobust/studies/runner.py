"""Run a study recipe end to end, resumably.

For each model variant: train (resuming an interrupted run from its checkpoint), then
every attack protocol, the per-operation gradient analysis and the vulnerability
measures. Each result is written to the study's SQLite store as soon as it completes,
keyed by the checkpoint's sha256 and the full configuration, so re-running an
interrupted study recomputes nothing that is done. Finally the report is written.

Replicates (``replicates: N`` per recipe size, default 3 at quick size,
:func:`snnrobust.studies.recipes.default_replicates`): every variant is made N times,
replicate r with training seed = the variant's seed + r, in its own folder (replicate 0 in
``models/LABEL`` as before, so study folders made before replicates existed resume;
replicate r >= 1 in ``models/replicate-r/LABEL``). Each replicate is a chain of its own:
a converted variant's replicate r converts its ANN's replicate r (conversion seed + r), a
fine-tuned variant's replicate r starts from its converted variant's replicate r, and
transfer sources (``other-variants``, ``same-type-source``) are the sources' replicate r, so
each replicate is a complete, independent copy of the experiment and the black-box source of
replicate r was itself trained with another seed than its target. Replicates are made in
order (all of replicate 0, then 1, ...); each trained model and each evaluation is its own
row of the store (its checkpoint differs), so a study killed during replicate 2 keeps
replicates 0 and 1 and resumes 2. Every protocol evaluates every replicate on the same test
images, so two variants can be compared per seed and per sample
(:mod:`snnrobust.analysis.paired`). The vulnerability measure (rho, no claim rests on it)
runs on replicate 0 only; gradient sparsity runs on every replicate.

Incomplete evaluations: an evaluation in which an attack crashed (even after the
out-of-memory retries at smaller batches) is stored as it is, with ``complete: false`` and
its reasons, so study.json and the report show what was done and what was not; it is
logged, flagged in red in the report (no verdict rests on it), listed under
``"incomplete"`` in :meth:`StudyRunner.run`'s return value, and ``snnrobust study`` exits
non-zero. It is *not* done: a re-run recomputes it (a crash is usually transient or fixed
by a smaller batch or another device, and a demanding user wants the complete number, not a
cached partial one) and replaces the stored row with the new attempt, complete or not.
"""

from __future__ import annotations

import datetime as _dt
import json
import time
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from .. import distributed
from ..evaluation.engine import evaluate
from ..evaluation.results import incomplete_from_dict
from ..evaluation.suites import get_budget
from ..evaluation.threat import ThreatModel, parse_eps
from ..data import get_dataset
from ..data.events import frames_for_model
from ..io import atomic_write_text, check_output_folder
from ..store import ResultsStore, cached, file_sha256
from ..store.hashing import config_hash
from ..store.journal import BatchJournal
from ..conversion import ConversionConfig, convert_checkpoint
from ..errors import ConfigError
from ..training import CHECKPOINT_NAME, TrainConfig, load_checkpoint, train
from ..training.checkpoint import read_checkpoint
from ..evaluation.metrics import wilson_interval as wilson
from ..environment import machine_info
from .recipes import Recipe, load_recipe

Log = Callable[[str], None]


def _merge(base: dict, over: Optional[dict]) -> dict:
    out = dict(base)
    out.update(over or {})
    return out


def _rate(k: int, n: int) -> dict:
    lo, hi = wilson(k, n)
    return {"k": k, "n": n, "value": k / max(n, 1), "ci": [lo, hi]}


def transfer_sources(spec: dict, label: str, proto: dict, models: dict[str, Any]) -> Optional[list[tuple[str, Any]]]:
    """The (label, model) pairs protocol ``proto`` transfers from when attacking variant
    ``label`` of recipe size ``spec``; ``models`` maps labels to models. "other-variants":
    every other model; "same-type-source": the variant's black-box source, or None when it
    has none (the protocol does not apply to it); no ``transfer``: none. A protocol with
    ``models: [LABEL, ...]`` applies to those variants only (None for the others)."""
    if proto.get("models") is not None and label not in proto["models"]:
        return None
    how = proto.get("transfer")
    if how == "other-variants":
        return [(k, m) for k, m in models.items() if k != label]
    if how == "same-type-source":
        src = (spec.get("black_box_sources") or {}).get(label)
        return [(src, models[src])] if src else None
    return []


def study_threat(spec: dict, proto: Optional[dict] = None) -> ThreatModel:
    """The threat model protocol ``proto`` of recipe size ``spec`` attacks under: the recipe's
    ``eval`` norm and eps, or the protocol's own ``norm`` / ``eps`` (an event study attacks the
    same models under L-inf, L0 flips and retiming)."""
    ev = spec["eval"]
    proto = proto or {}
    return ThreatModel(norm=proto.get("norm", ev.get("norm", "linf")), eps=parse_eps(proto.get("eps", ev["eps"])))


def protocol_eps_sweep(spec: dict, proto: dict) -> list:
    """The eps curve of a suite protocol: its own ``eps_sweep`` (``[]``: none), else the recipe's."""
    return list(proto["eps_sweep"]) if proto.get("eps_sweep") is not None else list(spec["eval"].get("eps_sweep", []))


def protocol_keywords(spec: dict, proto: dict, threat: ThreatModel, sources: Optional[list], **run: Any) -> dict:
    """The keywords of :func:`~snnrobust.evaluation.engine.evaluate` (the fields of its
    :class:`~snnrobust.evaluation.request.EvaluationRequest`) for protocol ``proto`` of recipe
    size ``spec`` with transfer ``sources``, used by the run and by ``--check`` alike; ``run``
    adds the run's own (progress, device, model_info, data_info). A suite protocol runs the
    recipe's eps curve (none when it gives none, not the suite's default), at its ``budget``
    (the request's default when absent); an attack protocol runs its ``options``, no curve."""
    ev = spec["eval"]
    if "suite" in proto:
        what: dict = {"suite": proto["suite"], "eps_sweep": protocol_eps_sweep(spec, proto)}
        if "budget" in proto or proto.get("overrides"):
            # a protocol may scale its preset (``overrides``: Budget.override keys); the result names them
            what["budget"] = get_budget(proto.get("budget", "quick")).override(**(proto.get("overrides") or {}))
    else:
        what = {"attack": proto["attack"], "attack_options": proto.get("options", {}), "eps_sweep": []}
    if proto.get("vote") is not None:
        # forward passes per prediction on stochastic models (the Victim's default is 10): every
        # attack step scores its candidates by a vote, so on a CPU this sets much of the cost
        what["vote"] = int(proto["vote"])
    return dict(threat=threat, transfer_sources=sources or None, batch_size=int(ev.get("batch_size", 250)),
                **what, **run)


def clean_correct(model: torch.nn.Module, dataset, batch_size: int, device: torch.device) -> torch.Tensor:
    """Whether ``model`` (eval mode, one forward pass per image) classifies each image of
    ``dataset`` correctly: bool [len(dataset)], in dataset order (the per-sample record that
    paired comparisons of clean accuracy use)."""
    was = model.training
    model.eval()
    out = []
    idx = torch.arange(len(dataset))
    try:
        with torch.no_grad():
            for s in range(0, len(dataset), batch_size):
                x, y = dataset.batch(idx[s:s + batch_size])
                out.append((model(x.to(device)).argmax(1).cpu() == y))
    finally:
        model.train(was)
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.bool)


class StudyRunner:
    def __init__(self, recipe: Recipe, size: str, out: "str | Path", data_root: Optional[str] = None,
                 device: str = "auto", progress: bool = True, log: Log = print,
                 replicates: Optional[int] = None) -> None:
        self.recipe = recipe
        self.size = size
        self.spec = recipe.size(size)
        # ``replicates`` overrides the recipe's (``snnrobust demo`` runs one); the recipe validated its own
        self.replicates = int(replicates if replicates is not None else self.spec.get("replicates", 1))
        if self.replicates < 1:
            raise ConfigError(f"replicates must be a positive integer, got {self.replicates}")
        self.folder = Path(out)
        self.data_root = data_root
        self.device = device
        self.progress = progress
        self.log = log
        # replicate -> label -> {"model": nn.Module, "sha": str, "entry": dict}
        self.made: dict[int, dict[str, dict]] = {}
        self.incomplete: list[str] = []     # "<model> / <protocol>" of evaluations an attack crashed in

    @property
    def models(self) -> dict[str, dict]:
        """Replicate 0's models by label."""
        return self.made.setdefault(0, {})

    @models.setter
    def models(self, value: dict[str, dict]) -> None:
        self.made[0] = value

    def _unit_name(self, label: str, r: int) -> str:
        """How logs and the incomplete list name replicate r of a variant."""
        return label if r == 0 else f"{label} (replicate {r})"

    # -- helpers ---------------------------------------------------------------------------
    def _eval_data(self, splits) -> tuple[torch.Tensor, torch.Tensor]:
        n = min(int(self.spec["eval"]["samples"]), len(splits.test))
        return splits.test.batch(torch.arange(n))

    def _variant_train_config(self, v: dict, replicate: int = 0) -> TrainConfig:
        """The training run of replicate ``replicate`` of variant ``v`` (seed: the variant's +
        replicate). A fine-tuned variant (``init_from: LABEL``, Sharmin et al. 2020's SNN-BP)
        names only the model options it changes: the rest comes from the converted checkpoint it
        starts from (the same replicate of it, which the runner made earlier in the list)."""
        tr = _merge(self.spec["train"], v.get("train"))
        tr["seed"] = int(tr.get("seed", 0)) + replicate
        if v.get("init_from"):
            model = {"name": self.spec["model"]["name"], **(v.get("model") or {})}
            tr["init_from"] = str(self._variant_folder(v["init_from"], replicate) / CHECKPOINT_NAME)
        elif (v.get("model") or {}).get("name", self.spec["model"]["name"]) != self.spec["model"]["name"]:
            # another architecture (a defended baseline on its own paper's network): the base
            # model's options belong to the base architecture, so the variant gives all of its own
            model = dict(v["model"])
        else:
            model = _merge(self.spec["model"], v.get("model"))
        tr.update(model=model, dataset=self.spec["dataset"], data_root=self.data_root, device=self.device,
                  out=str(self._variant_folder(v["label"], replicate)))
        return TrainConfig.from_dict(tr)

    def _variant_folder(self, label: str, replicate: int = 0) -> Path:
        """Replicate 0 where studies have always kept their models (so old folders resume)."""
        if replicate == 0:
            return self.folder / "models" / label
        return self.folder / "models" / f"replicate-{replicate}" / label

    def _conversion_config(self, v: dict, replicate: int = 0) -> ConversionConfig:
        opts = {k: val for k, val in v["convert"].items() if k != "from"}
        seed = int(opts.pop("seed", self.spec["train"].get("seed", 0))) + replicate
        return ConversionConfig(**{"seed": seed, **opts})

    def _convert(self, v: dict, replicate: int = 0) -> Path:
        """Replicate ``replicate`` of variant ``v``, made by converting that replicate of variant
        ``v['convert']['from']`` (an ANN trained earlier in the list); a converted checkpoint
        already in place is reused when it was made from the same ANN checkpoint with the same
        settings."""
        cfg = self._conversion_config(v, replicate)
        src = self.made[replicate][v["convert"]["from"]]
        target = self._variant_folder(v["label"], replicate) / CHECKPOINT_NAME
        if target.is_file():
            done = read_checkpoint(target)
            made = done.get("conversion") or {}
            same = ((done.get("ann_source") or {}).get("sha256") == src["sha"]
                    and all(made.get(k) == getattr(cfg, k) for k in ("method", "T", "calibration_samples", "seed"))
                    and (cfg.method != "percentile" or made.get("percentile") == cfg.percentile))
            if same:
                self.log(f"[{self.recipe.name}] model {self._unit_name(v['label'], replicate)}: "
                         "reusing the converted checkpoint")
                return target
            raise ConfigError(f"{target} was converted from another ANN or with other settings than this recipe "
                              "asks; delete that folder (or give another --out) to convert again")
        self.log(f"[{self.recipe.name}] model {self._unit_name(v['label'], replicate)}: converting "
                 f"{v['convert']['from']} ({cfg.method}, T={cfg.T}, {cfg.calibration_samples} calibration images)")
        if distributed.is_main():  # one process converts; the others wait and read its checkpoint
            convert_checkpoint(src["entry"]["checkpoint"], self._variant_folder(v["label"], replicate), cfg,
                               device=str(self._device()))
        distributed.barrier()
        return target

    # -- stages ----------------------------------------------------------------------------
    def train_all(self, splits) -> None:
        """Make every replicate of every variant, replicate by replicate and in list order
        within one: train it (BPTT, or its ANN twin with ``train: {method: ann}``), convert an
        ANN made earlier (``convert: {from: LABEL, ...}``), or fine-tune a converted one
        (``init_from: LABEL``). Replicate r follows its own chain (module docstring)."""
        for r in range(self.replicates):
            for v in self.spec["variants"]:
                self._make(v, r, splits)

    def _make(self, v: dict, r: int, splits) -> None:
        name = self._unit_name(v["label"], r)
        if v.get("convert"):
            ckpt, eval_batch = self._convert(v, r), 256
            seed = self.made[r][v["convert"]["from"]]["entry"]["seed"]  # the lineage's: its ANN's
        else:
            cfg = self._variant_train_config(v, r)
            what = "fine-tuning " + v["init_from"] if v.get("init_from") else "training"
            self.log(f"[{self.recipe.name}] model {name}: {what} ({cfg.epochs} epochs, seed {cfg.seed}, resumable)")
            ckpt, eval_batch = train(cfg, resume=True, progress=self.progress).checkpoint, cfg.eval_batch_size
            seed = cfg.seed
        model, ck = load_checkpoint(ckpt, map_location=self._device())
        sha = file_sha256(ckpt)
        correct = clean_correct(model, splits.test, eval_batch, self._device())
        made = ck.get("train_config") or {"conversion": ck.get("conversion")}
        entry = {"label": v["label"], "replicate": r, "seed": seed, "group": v.get("group", v["label"]),
                 "model_config": ck["model_config"], "train_config": made, "checkpoint": str(ckpt),
                 "checkpoint_sha256": sha, "clean_accuracy": _rate(int(correct.sum()), int(correct.numel())),
                 # per test image, "1" correct / "0" wrong: the paired (McNemar) comparison of clean accuracy
                 "clean_correct": "".join("1" if c else "0" for c in correct.tolist()),
                 "train_metrics": ck.get("metrics", []), "attacked": v.get("attack", True),
                 "provenance": ck.get("provenance", []), "machine": machine_info(self._device())}
        if distributed.is_main():
            self.store.put("train", sha, {"train_config": made}, entry, label=name, study=self.recipe.name)
        self.made.setdefault(r, {})[v["label"]] = {"model": model, "sha": sha, "entry": entry,
                                                   "ann_source": ck.get("ann_source")}  # converted/hybrid: source-ann

    def _device(self) -> torch.device:
        from ..training import resolve_device

        # under torchrun each process computes on its own GPU (or the CPU)
        return torch.device(distributed.device()) if distributed.active() else resolve_device(self.device)

    def evaluate_all(self, x: torch.Tensor, y: torch.Tensor, data_info: dict) -> list[dict]:
        """Every protocol on every attacked model of every replicate, replicate by replicate,
        all on the same images ``x``, ``y`` (a protocol's ``samples`` takes their first N)."""
        out = []
        for r in sorted(self.made):
            out += self._evaluate_replicate(r, x, y, data_info)
        return out

    def _evaluate_replicate(self, r: int, x: torch.Tensor, y: torch.Tensor, data_info: dict) -> list[dict]:
        out = []
        made = self.made[r]
        modules = {k: v["model"] for k, v in made.items()}
        for label, m in made.items():
            if not m["entry"]["attacked"]:
                continue
            for proto in self.spec["protocols"]:
                threat = study_threat(self.spec, proto)
                # transfer sources are this replicate's (module docstring)
                sources = transfer_sources(self.spec, label, proto, modules)
                if sources is None:
                    continue
                # ``samples``: a protocol may attack only the first N of the evaluation images
                xp, yp = (x, y) if not proto.get("samples") else (x[:int(proto["samples"])], y[:int(proto["samples"])])
                config = {"protocol": proto, "threat": threat.to_dict(), "n": int(xp.shape[0]),
                          "eps_sweep": protocol_eps_sweep(self.spec, proto),
                          "sources": [s for s, _ in sources],
                          "source_sha": [made[s]["sha"] for s, _ in sources], "seed": 0}
                desc = f"{self._unit_name(label, r)} / {proto['name']}"

                def compute(journal, label=label, m=m, proto=proto, sources=sources, xp=xp, yp=yp,
                            threat=threat) -> dict:
                    self.log(f"[{self.recipe.name}] attacking {desc}")
                    kw = protocol_keywords(self.spec, proto, threat, sources, progress=self.progress,
                                          data_info=data_info, device=self._device(),
                                          model_info={"label": label, "checkpoint": m["entry"]["checkpoint"],
                                                      "checkpoint_sha256": m["sha"]})
                    return evaluate(m["model"], xp, yp, source_ann=m.get("ann_source"), journal=journal,
                                    **kw).to_dict()

                t0 = time.time()
                payload, was = self._evaluation(m["sha"], config, compute, desc)
                missing = incomplete_from_dict(payload)
                if missing:
                    self.incomplete.append(desc)
                    self.log(f"[{self.recipe.name}] {desc}: INCOMPLETE after {time.time() - t0:.0f}s: "
                             + "; ".join(f.get("reason") or str(f.get("error")) for f in missing))
                else:
                    self.log(f"[{self.recipe.name}] {desc}: "
                             f"{'reused stored result' if was else f'done in {time.time() - t0:.0f}s'}")
                out.append({"model": label, "replicate": r, "seed": m["entry"].get("seed"), "protocol": proto["name"],
                            "weak": bool(proto.get("weak", False)), "result": payload})
        return out

    def _evaluation(self, sha: str, config: dict, compute: Callable[[Any], dict], desc: str) -> tuple[dict, bool]:
        """(payload, reused): the stored evaluation when it is complete, else a fresh one,
        stored at once (replacing a stored incomplete one; see the module docstring)."""
        # under torchrun every process must take the same branch: rank 0's view decides
        stored = distributed.broadcast(self.store.get("evaluation", sha, config))
        if stored is not None and not incomplete_from_dict(stored):
            return stored, True
        if stored is not None:
            self.log(f"[{self.recipe.name}] {desc}: the stored result is INCOMPLETE; computing it again")
        t0 = time.perf_counter()
        # finished batches go to the journal at once: a killed evaluation resumes batch by batch
        journal = BatchJournal(self.store.path, config_hash({"checkpoint": sha, **config}))
        payload = compute(journal)
        if distributed.is_main():
            self.store.put("evaluation", sha, config, payload, label=desc, study=self.recipe.name,
                           duration_s=time.perf_counter() - t0, replace=stored is not None)
            journal.clear()
        journal.close()
        back = self.store.get("evaluation", sha, config)
        return (back if back is not None else payload), False

    def sparsity_all(self, splits) -> list[dict]:
        sp = self.spec.get("sparsity")
        if not sp:
            return []
        from ..analysis import op_gradient_stats

        n = min(int(sp.get("samples", 200)), len(splits.test))
        x, y = splits.test.batch(torch.arange(n))
        out = []
        for r in sorted(self.made):
            for label, m in self.made[r].items():
                if not m["entry"]["attacked"]:
                    continue
                name = self._unit_name(label, r)
                for source in sp.get("sources", ["attack"]):
                    config = {"source": source, "n": n}

                    def compute(m=m, source=source, name=name) -> dict:
                        self.log(f"[{self.recipe.name}] gradient sparsity of {name} ({source} loss)")
                        return op_gradient_stats(m["model"], x, y, source=source).to_dict()

                    payload, _ = cached(self.store, "sparsity", m["sha"], config, compute,
                                        label=f"{name} / {source}", study=self.recipe.name)
                    out.append({"model": label, "replicate": r, "seed": m["entry"].get("seed"), "source": source,
                                "result": payload})
        return out

    def vulnerability_all(self, splits) -> list[dict]:
        vu = self.spec.get("vulnerability")
        if not vu:
            return []
        from ..analysis import vulnerability

        n = min(int(vu.get("samples", 200)), len(splits.test))
        x, y = splits.test.batch(torch.arange(n))
        eps = parse_eps(self.spec["eval"]["eps"])
        out = []
        for label, m in self.models.items():  # replicate 0 only: no claim rests on rho (module docstring)
            if not m["entry"]["attacked"]:
                continue
            config = {"n": n, "eps": eps, "n_random": vu.get("n_random", 10),
                      "attack_options": vu.get("attack_options")}

            def compute(m=m) -> dict:
                self.log(f"[{self.recipe.name}] vulnerability (rho) of {label}")
                return vulnerability(m["model"], x, y, eps, n_random=int(vu.get("n_random", 10)),
                                     attack_options=vu.get("attack_options")).to_dict()

            payload, _ = cached(self.store, "vulnerability", m["sha"], config, compute, label=label,
                                study=self.recipe.name)
            out.append({"model": label, "replicate": 0, "seed": m["entry"].get("seed"), "result": payload})
        return out

    # -- all -------------------------------------------------------------------------------
    def run(self) -> dict:
        t0 = time.time()
        started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")  # "created" is when this run began
        self.folder.mkdir(parents=True, exist_ok=True)
        splits = get_dataset(self.spec["dataset"], root=self.data_root,
                             split_seed=int(self.spec["train"].get("split_seed", 0)),
                             frames=frames_for_model(self.spec["model"]))
        with ResultsStore(self.folder) as store:
            self.store = store
            self.train_all(splits)
            x, y = self._eval_data(splits)
            data_info = {**splits.info.to_dict(), "evaluated": int(x.shape[0])}
            evaluations = self.evaluate_all(x, y, data_info)
            sparsity = self.sparsity_all(splits)
            vuln = self.vulnerability_all(splits)
        study = {
            "study": self.recipe.name, "size": self.size, "title": self.recipe.title,
            "description": self.recipe.description.strip()
            + ("\n\n" + self.spec["note"] if self.spec.get("note") else ""),
            "created": started,
            "seconds": time.time() - t0,
            "dataset": splits.info.to_dict(),
            "replicates": self.replicates, "machine": machine_info(self._device()),
            "models": [m["entry"] for r in sorted(self.made) for m in self.made[r].values()],
            "evaluations": evaluations, "sparsity": sparsity, "vulnerability": vuln,
            "claims": self.recipe.claims,
        }
        from ..report import write_report

        paths = {}
        if distributed.is_main():  # one writer of the report; the other processes only helped compute
            paths = write_report(study, self.folder)
            atomic_write_text(self.folder / "study.json", json.dumps(study, indent=1, default=str))
        paths = distributed.broadcast(paths)  # every process returns where the report is
        if self.incomplete:
            self.log(f"[{self.recipe.name}] INCOMPLETE: {len(self.incomplete)} evaluation(s) had an attack crash "
                     f"({', '.join(self.incomplete)}); the report marks them and re-running the study retries them")
        return {"folder": self.folder, **paths, "incomplete": list(self.incomplete)}


def run_study(name: str, size: str = "quick", out: "str | Path | None" = None, data_root: Optional[str] = None,
              device: str = "auto", progress: bool = True, log: Log = print,
              replicates: Optional[int] = None) -> dict:
    """Run study ``name`` at ``size`` ("quick" or "full") into ``out`` (default
    runs/study-NAME-SIZE); returns the report paths. Re-running resumes. ``replicates``
    overrides the recipe's number of replicates (replicate 0 is the same model either way, so
    a later run with more replicates reuses it)."""
    recipe = load_recipe(name)
    folder = check_output_folder(Path(out) if out is not None else Path("runs") / f"study-{name}-{size}", "--out")
    return StudyRunner(recipe, size, folder, data_root, device, progress, log, replicates=replicates).run()
