"""How far is each budget from the truth: quick and thorough against exhaustive, same images.

    python benchmarks/bench_budgets.py --model max=runs/max/checkpoint.pt --model avg=runs/avg/checkpoint.pt \\
        --model poisson=runs/poisson/checkpoint.pt --n 200 --eps 0.1 --out runs/bench-budgets

For every model, the ``reliable`` suite runs under each budget (``--budgets``, default quick,
thorough, exhaustive) on the first ``--n`` test images of the checkpoint's own split, with the
same seed, no eps curve and no diagnostics (only the attacks are compared). Each (model,
budget) result is written to ``OUT/<model>.<budget>[.<overrides>].n<N>.eps<EPS>.seed<S>.json`` as soon
as it is done, and a re-run with the same settings reuses it: a long exhaustive run can be interrupted and continued.

Printed per model:

- robust accuracy with its 95 % Wilson interval, per budget;
- compute: image-gradient evaluations (forward passes that build an input-gradient graph, EOT
  samples counted each) and forward-only image evaluations (scoring, votes, Square queries),
  summed over the suite's attacks, and wall time, each also as a fraction of exhaustive's;
- every sample a budget calls robust but exhaustive breaks, listed with the exhaustive attacks
  (attack/estimator) that broke it. Exhaustive runs every attack on every clean-correct sample,
  so its records say, per attack, exactly which samples it broke.

``--override BUDGET:KEY=VALUE`` (repeatable) makes a cheaper variant of a preset (for example
``exhaustive:restarts=2``); the override is recorded in the result and printed, and a run with
overrides is not the preset any more: say so wherever its numbers are quoted.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch


def _parse_models(items: list[str]) -> list[tuple[str, str]]:
    out = []
    for item in items:
        label, sep, path = item.partition("=")
        if not sep or not label or not path:
            sys.exit(f"error: --model takes LABEL=CHECKPOINT, got {item!r}")
        out.append((label, path))
    return out


def _parse_overrides(items: list[str]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for item in items:
        budget, sep, kv = item.partition(":")
        key, sep2, value = kv.partition("=")
        if not sep or not sep2 or not value.isdigit():
            sys.exit(f"error: --override takes BUDGET:KEY=INTEGER, got {item!r}")
        out.setdefault(budget, {})[key] = int(value)
    return out


def compute_of(result) -> dict:
    """Image-gradient and forward-only image evaluations summed over the result's attacks."""
    return {"gradient_images": sum(a.gradient_images for a in result.attacks),
            "forward_images": sum(a.forward_images for a in result.attacks),
            "attack_time_s": sum(a.time_s for a in result.attacks)}


def robust_samples(result) -> set[int]:
    """Indices the worst case calls robust (clean-correct and broken by no attack)."""
    return {i for i, b in enumerate(result.worst_case.per_sample) if b is None}


def breakers(result) -> dict[int, list[str]]:
    """sample index -> ids of the attacks that broke it (every attack that did, when the run
    had no cascade; the first one otherwise)."""
    out: dict[int, list[str]] = {}
    for a in result.attacks:
        for i in a.broken:
            out.setdefault(int(i), []).append(a.id)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", required=True, metavar="LABEL=CKPT")
    ap.add_argument("--n", type=int, default=200, help="first N test images (default 200)")
    ap.add_argument("--eps", default="0.1", help="L-inf eps in pixel units (default 0.1)")
    ap.add_argument("--budgets", nargs="+", default=["quick", "thorough", "exhaustive"])
    ap.add_argument("--reference", default="exhaustive", help="the budget the others are compared with")
    ap.add_argument("--override", action="append", default=[], metavar="BUDGET:KEY=VALUE")
    ap.add_argument("--batch-size", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default="runs/bench-budgets")
    ap.add_argument("--only-report", action="store_true", help="print from stored results, run nothing")
    args = ap.parse_args()

    from snnrobust.evaluation import ThreatModel
    from snnrobust.evaluation.engine import evaluate
    from snnrobust.evaluation.results import EvaluationResult
    from snnrobust.evaluation.suites import get_budget
    from snnrobust.evaluation.threat import parse_eps
    from snnrobust.data import get_dataset
    from snnrobust.io import atomic_write_text
    from snnrobust.training import load_checkpoint

    models = _parse_models(args.model)
    overrides = _parse_overrides(args.override)
    if args.reference not in args.budgets:
        sys.exit(f"error: the reference budget {args.reference!r} must be one of --budgets")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    threat = ThreatModel(norm="linf", eps=parse_eps(args.eps))
    print(f"machine: {platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}, "
          f"device {args.device}; reliable suite, {threat.label()}, first {args.n} test images, seed {args.seed}")

    for label, path in models:
        results: dict[str, EvaluationResult] = {}
        model = x = y = None
        for name in args.budgets:
            over = "".join(f".{k}{v}" for k, v in sorted(overrides.get(name, {}).items()))
            file = out / f"{label}.{name}{over}.n{args.n}.eps{args.eps.replace('/', '_')}.seed{args.seed}.json"
            if file.exists():
                results[name] = EvaluationResult.from_dict(json.loads(file.read_text()))
                continue
            if args.only_report:
                continue
            if model is None:
                model, ckpt = load_checkpoint(path, map_location=args.device)
                data = ckpt["data"]
                test = get_dataset(data["dataset"], split_seed=data.get("split_seed", 0)).test
                x, y = test.batch(torch.arange(min(args.n, len(test))))
            budget = get_budget(name).override(**overrides.get(name, {}))
            t0 = time.perf_counter()
            res = evaluate(model, x, y, suite="reliable", budget=budget, threat=threat, eps_sweep=[],
                           diagnostics=False, seed=args.seed, batch_size=args.batch_size, progress=True,
                           device=args.device, model_info={"checkpoint": path, "label": label})
            print(f"[{label}] {name}: {res.robust_accuracy.percent()} in {time.perf_counter() - t0:.0f} s",
                  flush=True)
            atomic_write_text(file, json.dumps(res.to_dict(), indent=1))
            results[name] = res
        report(label, results, args.reference)


def report(label: str, results: dict, reference: str) -> None:
    if not results:
        return
    ref = results.get(reference)
    print(f"\n## {label}")
    print(f"| budget | overrides | robust accuracy [95 % CI] | image-gradient evals | forward evals | wall (s) "
          f"| gradient evals vs {reference} | wall vs {reference} | robust here, broken by {reference} |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    ref_c = compute_of(ref) if ref else None
    ref_breakers = breakers(ref) if ref else {}
    for name, res in results.items():
        c = compute_of(res)
        over = ", ".join(f"{k}={v}" for k, v in res.budget.overrides) or "-"
        if ref_c and ref is not res:
            g = f"{c['gradient_images'] / max(ref_c['gradient_images'], 1):.2%}"
            w = f"{res.timing_s / max(ref.timing_s, 1e-9):.2%}"
            missed = sorted(robust_samples(res) & set(ref_breakers))
            m = str(len(missed))
        else:
            g = w = m = "-"
        flag = "" if res.complete else " INCOMPLETE"
        print(f"| {name}{flag} | {over} | {res.robust_accuracy.percent()} | {c['gradient_images']:,} | "
              f"{c['forward_images']:,} | {res.timing_s:.0f} | {g} | {w} | {m} |")
    if ref is None:
        print(f"(no {reference} result yet: nothing to compare with)")
        return
    for name, res in results.items():
        if res is ref:
            continue
        missed = sorted(robust_samples(res) & set(ref_breakers))
        print(f"\n{label}: samples {name} calls robust that {reference} breaks: {len(missed)}")
        for i in missed:
            print(f"  sample {i}: broken by {', '.join(ref_breakers[i])}")
        fixed = sorted(robust_samples(ref) - robust_samples(res))
        if fixed:
            print(f"  ({len(fixed)} samples {reference} calls robust were broken by {name}: "
                  f"{', '.join(map(str, fixed))})")


if __name__ == "__main__":
    main()
