"""Wall time of the `reliable` suite on one checkpoint, for one or more source trees side by side.

Runs ``evaluate(suite="reliable", budget=...)`` on the first N test images of the
checkpoint's dataset under each given source tree (``--tree DIR``, a checkout whose ``src/``
is put first on ``sys.path``; default: the installed snnrobust), each run in its own
process, alternating the trees' order over ``--rounds``. Prints per tree the median wall
time, the time of each attack and of the stages, the robust accuracy, and a fingerprint of
the per-sample outcomes, so a speed change can be shown to leave every sample's result as it
was (same seed, same machine and thread count). A tree written ``DIR:kernel`` runs with the
compiled CPU neuron kernel enabled (``snnrobust.spiking.cpu_kernel.enable()``, built before the
timed run; what ``attack --neuron-kernel`` does), ``DIR:channels-last`` with channels-last
layers (``attack --channels-last``), ``DIR:kernel,channels-last`` with both.

    git worktree add /tmp/before <commit>
    python benchmarks/bench_reliable.py CKPT --n 1000 --tree /tmp/before --tree . \
        --tree .:kernel,channels-last --rounds 2
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time


def child(ckpt: str, n: int, budget: str, overrides: dict, eps: float, batch_size: int, options: list) -> dict:
    import torch

    if "kernel" in options:
        from snnrobust.spiking import cpu_kernel

        cpu_kernel.enable()

    from snnrobust.data import get_dataset
    from snnrobust.evaluation import ThreatModel, evaluate
    from snnrobust.evaluation.suites import get_budget
    from snnrobust.training import load_checkpoint

    model, ck = load_checkpoint(ckpt)
    model.eval()
    data = get_dataset(ck.get("dataset") or "mnist5k")
    x, y = data.test.batch(torch.arange(min(n, len(data.test))))
    b = get_budget(budget)
    if overrides:
        b = b.override(**overrides)
    layout = contextlib.nullcontext()
    if "channels-last" in options:  # (older trees have no channels_last)
        from snnrobust.spiking import channels_last

        layout = channels_last(model)
    # a `with` block: a context manager entered without one is undone when it is garbage-collected
    with layout:
        t = time.perf_counter()
        r = evaluate(model, x, y, suite="reliable", budget=b, threat=ThreatModel("linf", eps), eps_sweep=[],
                     progress=False, batch_size=batch_size)
        wall = time.perf_counter() - t
    outcome = json.dumps(r.worst_case.per_sample)
    return {"wall_s": wall, "robust": r.worst_case.robust_accuracy.value, "complete": r.complete,
            "fingerprint": hashlib.sha256(outcome.encode()).hexdigest()[:12],
            "attacks": {a.id: a.time_s for a in r.attacks},
            "stages": dict(getattr(r, "timing_breakdown_s", None) or {})}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--eps", type=float, default=0.1)
    ap.add_argument("--budget", default="quick")
    ap.add_argument("--override", default="{}", help='budget overrides as JSON, e.g. \'{"square_queries": 1000}\'')
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--tree", action="append", default=[], help="source checkout to time (repeatable)")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--options", default="", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(a.checkpoint, a.n, a.budget, json.loads(a.override), a.eps, a.batch_size,
                               [o for o in a.options.split(",") if o])))
        return
    import torch

    trees = a.tree or [""]
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
          f"torch {torch.__version__}; reliable / {a.budget} {a.override} on {a.n} images, eps {a.eps}, "
          f"{a.rounds} round(s)", flush=True)
    runs: dict[str, list[dict]] = {t: [] for t in trees}
    for r in range(a.rounds):
        order = trees[r % len(trees):] + trees[:r % len(trees)]
        for tree in order:
            env = dict(os.environ)
            where, _, option = tree.partition(":")
            if where:
                env["PYTHONPATH"] = os.path.join(os.path.abspath(where), "src") + os.pathsep + env.get("PYTHONPATH", "")
            cmd = [sys.executable, os.path.abspath(__file__), a.checkpoint, "--child", "--n", str(a.n), "--eps",
                   str(a.eps), "--budget", a.budget, "--override", a.override, "--batch-size", str(a.batch_size)]
            unknown = set(o for o in option.split(",") if o) - {"kernel", "channels-last"}
            if unknown:
                raise SystemExit(f"--tree {tree}: the options after ':' are kernel and channels-last")
            cmd += ["--options", option]
            p = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if p.returncode != 0:
                raise SystemExit(f"{tree or 'installed'} failed: {p.stderr.strip().splitlines()[-1:]}")
            m = json.loads(p.stdout.strip().splitlines()[-1])
            runs[tree].append(m)
            print(f"round {r} {tree or 'installed':<20} {m['wall_s']:7.1f} s  robust {m['robust']:.4f}  "
                  f"outcomes {m['fingerprint']}", flush=True)
    base = statistics.median(m["wall_s"] for m in runs[trees[0]])
    for tree in trees:
        ms = runs[tree]
        med = statistics.median(m["wall_s"] for m in ms)
        print(f"\n{tree or 'installed'}: median {med:.1f} s ({med / base:.2f}x the first tree), robust "
              f"{ms[0]['robust']:.4f}, outcomes {sorted({m['fingerprint'] for m in ms})}")
        for k in ms[0]["attacks"]:
            print(f"  {k:<44} {statistics.median(m['attacks'].get(k, 0.0) for m in ms):7.1f} s")
        for k in ms[0]["stages"]:
            print(f"  stage {k:<38} {statistics.median(m['stages'].get(k, 0.0) for m in ms):7.1f} s")


if __name__ == "__main__":
    main()
