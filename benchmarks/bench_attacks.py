"""Attack throughput per gradient estimator, and wall time of the reliable suite.

    python benchmarks/bench_attacks.py CHECKPOINT                 # PGD image-steps/s per estimator
    python benchmarks/bench_attacks.py CHECKPOINT --suite-n 1000  # + reliable quick on 1000 test images
    python benchmarks/bench_attacks.py CHECKPOINT --suite-n 1000 --budgets quick thorough   # (thorough: GPU)

PGD throughput = images x steps / seconds for a fixed number of steps (no early stop:
every sample is attacked for every step), median over ``--repeats`` runs, all estimators
measured side by side in one invocation.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

ESTIMATORS = ["bptt", "bptt:triangle:1", "ste", "bptr", "rga", "hart:1.0", "pdsg", "assg:0.4"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--n", type=int, default=128, help="images per PGD timing run")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--eps", default="0.1")
    ap.add_argument("--suite-n", type=int, default=0, help="also time the reliable suite on this many images")
    ap.add_argument("--budgets", nargs="+", default=["quick"])
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    from snnrobust.attacks import get_attack
    from snnrobust.estimators import get_estimator
    from snnrobust.evaluation import ThreatModel, Victim
    from snnrobust.evaluation.engine import evaluate
    from snnrobust.evaluation.threat import parse_eps
    from snnrobust.data import get_dataset
    from snnrobust.training import load_checkpoint

    model, ckpt = load_checkpoint(args.checkpoint, map_location=args.device)
    data = ckpt["data"]
    test = get_dataset(data["dataset"], split_seed=data.get("split_seed", 0)).test
    x, y = test.batch(torch.arange(args.n))
    x, y = x.to(args.device), y.to(args.device)
    threat = ThreatModel(eps=parse_eps(args.eps))
    print(f"machine: {platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}, "
          f"device {args.device}; model {model.config.name} T={model.config.T} encoder={model.config.encoder}")
    print(f"PGD, {args.steps} steps on {args.n} images, eps {args.eps} (L-inf), median of {args.repeats}:")
    print(f"  {'estimator':<18} {'image-steps/s':>14} {'vs bptt':>8}")
    base = None
    for spec in ESTIMATORS:
        victim = Victim(model, threat, estimator=get_estimator(spec))
        attack = get_attack("pgd", steps=args.steps, random_start=True)
        z0 = victim.start(x)
        rates = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            attack.run(victim, z0, y)
            rates.append(args.n * args.steps / (time.perf_counter() - t))
        r = statistics.median(rates)
        base = base or r
        print(f"  {spec:<18} {r:>14.1f} {r / base:>7.2f}x", flush=True)

    if args.suite_n:
        xs, ys = test.batch(torch.arange(args.suite_n))
        for budget in args.budgets:
            t = time.perf_counter()
            res = evaluate(model, xs, ys, suite="reliable", budget=budget, threat=threat, progress=False,
                           device=args.device)
            wall = time.perf_counter() - t
            d = res.to_dict()
            rob = d["worst_case"]["robust_accuracy"]
            print(f"reliable suite, budget {budget}, {args.suite_n} images, eps {args.eps}: {wall / 60:.1f} min "
                  f"wall; clean {d['clean']['value']:.3f}, robust {rob['value']:.3f} "
                  f"[{rob['ci'][0]:.3f}, {rob['ci'][1]:.3f}]", flush=True)


if __name__ == "__main__":
    main()
