"""snnrobust's Square (windows drawn per sample) against AutoAttack's (``square-aa``, one window per
iteration for the whole batch) on one checkpoint: robust samples and wall time per seed, L-inf and L2.

    python benchmarks/bench_square.py CKPT --n 200 --queries 1000 --seeds 0 1
"""

from __future__ import annotations

import argparse
import time

import torch

from snnrobust.attacks import get_attack
from snnrobust.data import get_dataset
from snnrobust.evaluation import ThreatModel, Victim
from snnrobust.training import load_checkpoint


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--linf", type=float, default=0.1)
    ap.add_argument("--l2", type=float, default=1.5)
    args = ap.parse_args()
    model, ck = load_checkpoint(args.checkpoint)
    model.eval()
    data = get_dataset(ck.get("dataset") or "mnist5k")
    x, y = data.test.batch(torch.arange(min(args.n, len(data.test))))
    for norm, eps in (("linf", args.linf), ("l2", args.l2)):
        victim = Victim(model, ThreatModel(norm, eps))
        z0 = victim.start(x)
        clean = int((victim.predict(z0) == y).sum())
        for name in ("square", "square-aa"):
            for seed in args.seeds:
                t = time.perf_counter()
                r = get_attack(name, n_queries=args.queries, seed=seed).run(victim, z0, y)
                print(f"{norm} eps {eps:g} {name:<10} seed {seed}: robust {int((~r.success).sum())}/{len(y)} "
                      f"(clean {clean}) {time.perf_counter() - t:.0f} s", flush=True)


if __name__ == "__main__":
    main()
