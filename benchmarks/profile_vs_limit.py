"""Where a training or input-gradient step's time goes, snnrobust's neurons against the ReLU limit.

Builds the networks of ``bench_vs_spikingjelly.py`` (SEW-ResNet-18, CIFAR stem, direct input)
and profiles a few steps of each implementation with ``torch.profiler``, in its own process.
Every profiled operation's self CPU time is put in one category (convolution, BatchNorm,
neurons, pooling, copies and layout, other elementwise and bookkeeping), so the two columns add
up to what each step costs and their difference says what the spiking network spends beyond the
convolution/BatchNorm/pooling work every T-step network does. The compiled neuron kernel's calls
are made visible to the profiler (``snnrobust::neuron_forward`` / ``_backward``); time the
profiler does not see (Python between operations) is "unattributed".

    python benchmarks/profile_vs_limit.py --only "w16 T8" --step train
    python benchmarks/profile_vs_limit.py --only "w64 T4" --step grad --impls snnrobust-kernel,relu-limit
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

CATEGORIES = (  # first match wins, on the lower-cased event name
    ("neurons", r"snnrobust::neuron|relu|threshold_backward|fusedneuron|spikefn|surrogate"),
    ("convolution", r"conv"),
    ("batchnorm", r"batch_norm"),
    ("pooling", r"pool"),
    ("copies and layout", r"copy_|clone|contiguous|_to_copy|permute|transpose"),
    ("linear / matmul", r"addmm|\bmm\b|matmul|linear"),
)


def category(name: str) -> str:
    low = name.lower()
    for cat, pattern in CATEGORIES:
        if re.search(pattern, low):
            return cat
    return "other ops"


def _visible_kernel() -> None:
    """Route the compiled kernel's calls through record_function, so the profiler counts them."""
    import torch

    from snnrobust.spiking import cpu_kernel

    inner = cpu_kernel._module()

    class Visible:
        def forward(self, *a):
            with torch.profiler.record_function("snnrobust::neuron_forward"):
                return inner.forward(*a)

        def backward(self, *a):
            with torch.profiler.record_function("snnrobust::neuron_backward"):
                return inner.backward(*a)

    cpu_kernel._module = lambda: Visible()


def child(impl: str, label: str, step_name: str, iters: int) -> dict:
    import torch
    from torch.profiler import ProfilerActivity, profile

    from bench_vs_spikingjelly import CONFIGS, build
    from steps import timed_steps

    _, width, T, batch = next(c for c in CONFIGS if c[0] == label)
    model = build(impl, width, T, "cpu")
    if impl == "snnrobust-kernel":
        _visible_kernel()
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 3, 32, 32, generator=gen)
    y = torch.randint(0, 10, (batch,), generator=gen)
    opt = torch.optim.SGD(model.parameters(), 0.01, momentum=0.9)
    _, train_step, grad_step = timed_steps(model, x, y, opt, "cpu")
    step = train_step if step_name == "train" else grad_step
    model.train(step_name == "train")
    step()  # warm-up
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t = time.perf_counter()
        for _ in range(iters):
            step()
        wall = time.perf_counter() - t
    cats: dict[str, float] = {}
    for e in prof.key_averages():
        cats[category(e.key)] = cats.get(category(e.key), 0.0) + e.self_cpu_time_total / 1e3 / iters
    cats["unattributed"] = wall * 1e3 / iters - sum(cats.values())
    return {"wall_ms": wall * 1e3 / iters, "categories": cats}


def main() -> None:
    from bench_vs_spikingjelly import CONFIGS

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="w16 T8", help="substring of a configuration label")
    ap.add_argument("--step", choices=("train", "grad"), default="train")
    ap.add_argument("--impls", default="snnrobust-kernel,relu-limit")
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        impl, label = a.child.split("|")
        print(json.dumps(child(impl, label, a.step, a.iters)))
        return
    import torch

    labels = [c[0] for c in CONFIGS if a.only in c[0]]
    if not labels:
        raise SystemExit(f"--only {a.only!r} matches no configuration; choose from: {', '.join(c[0] for c in CONFIGS)}")
    impls = a.impls.split(",")
    print(f"{torch.get_num_threads()} torch threads, torch {torch.__version__}; {a.step} step, {a.iters} profiled "
          "steps after one warm-up; ms per step (self CPU time by category)")
    for label in labels:
        res = {}
        for impl in impls:
            p = subprocess.run([sys.executable, __file__, "--child", f"{impl}|{label}", "--step", a.step,
                                "--iters", str(a.iters)], capture_output=True, text=True)
            if p.returncode != 0:
                raise SystemExit(f"{label} / {impl} failed: {p.stderr.strip().splitlines()[-1:]}")
            res[impl] = json.loads(p.stdout.strip().splitlines()[-1])
        cats = sorted({c for r in res.values() for c in r["categories"]},
                      key=lambda c: -max(r["categories"].get(c, 0.0) for r in res.values()))
        print(f"\n{label}, {a.step}:")
        print(f"  {'category':<20}" + "".join(f"{i:>18}" for i in impls) + ("   difference" if len(impls) == 2 else ""))
        for c in cats + ["total (wall)"]:
            vals = [r["wall_ms"] if c == "total (wall)" else r["categories"].get(c, 0.0) for r in res.values()]
            diff = f"   {vals[0] - vals[1]:+10.1f}" if len(vals) == 2 else ""
            print(f"  {c:<20}" + "".join(f"{v:>18.1f}" for v in vals) + diff)


if __name__ == "__main__":
    main()
