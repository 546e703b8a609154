"""Evaluation throughput at 1 and at N processes (torchrun, gloo on CPUs / NCCL on GPUs).

Runs ``snnrobust attack CKPT --suite reliable --budget quick`` on the first ``--n`` test images
once as one plain process and once under ``torchrun --nproc_per_node N``, alternating the order
over ``--rounds`` rounds, each in its own processes, and prints the median wall time of each, the
ratio, and whether the two results hold the same per-sample outcomes (they must).

On a CPU machine the processes share its cores: one process runs torch on every core, each of N
processes on cores/N threads (torchrun's default OMP_NUM_THREADS=1 is replaced by that), so the
ratio measures the sharding's overhead and how well separate processes use the cores compared
with torch's own threads, not a speed-up from more hardware.

    python benchmarks/bench_distributed.py runs/demo/max-pool/checkpoint.pt --n 100 --steps 20 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _run(cmd: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint")
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--nproc", type=int, default=2)
    p.add_argument("--eps", default="0.1")
    p.add_argument("--batch-size", type=int, default=50)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, help="override the budget's attack steps (faster runs)")
    args = p.parse_args()
    cores = os.cpu_count() or 1
    tmp = Path(tempfile.mkdtemp(prefix="bench-dist-"))
    common = ["attack", args.checkpoint, "--suite", "reliable", "--budget", "quick", "--eps", args.eps,
              "--num-images", str(args.n), "--batch-size", str(args.batch_size), "--no-progress"]
    if args.steps:
        common += ["--steps", str(args.steps)]
    plain = [sys.executable, "-m", "snnrobust", *common]
    dist = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(args.nproc),
            "-m", "snnrobust", *common]
    env1 = {**os.environ, "OMP_NUM_THREADS": str(cores)}
    envn = {**os.environ, "OMP_NUM_THREADS": str(max(1, cores // args.nproc))}
    times: dict[str, list[float]] = {"1 process": [], f"{args.nproc} processes": []}
    outs = {}
    for r in range(args.rounds):
        order = [("1 process", plain, env1), (f"{args.nproc} processes", dist, envn)]
        for name, cmd, env in (order if r % 2 == 0 else order[::-1]):
            out = tmp / f"{name.replace(' ', '-')}-{r}.json"
            times[name].append(_run([*cmd, "--out", str(out)], env))
            outs[name] = json.loads(out.read_text())
            print(f"round {r + 1}: {name}: {times[name][-1]:.1f} s", flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    a, b = outs.values()
    same = a["worst_case"]["per_sample"] == b["worst_case"]["per_sample"]
    steps = f", {args.steps} steps" if args.steps else ""
    print(f"\nmachine: {cores} logical CPUs; {args.n} images, reliable quick{steps}, eps {args.eps}, "
          f"batch {args.batch_size}")
    for k, v in med.items():
        print(f"  {k:<12} median {v:7.1f} s  ({args.n / v:.2f} images/s)")
    one, many = med["1 process"], med[f"{args.nproc} processes"]
    print(f"  speed-up {one / many:.2f}x; identical per-sample outcomes: {same}; robust accuracy "
          f"{a['worst_case']['robust_accuracy']['value']:.3f}")


if __name__ == "__main__":
    main()
