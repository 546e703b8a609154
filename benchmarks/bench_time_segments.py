"""Memory and speed of input gradients (what every attack step takes) with BPTT over all T
steps at once against checkpointed time segments (``snnrobust.models.time_segments``), as T grows.

The network is SEW-ResNet-18 (width 16, 32x32 RGB, direct input, IF neurons, ATan(2)) in eval
mode, as attacks see it; one input gradient of the CE loss per step. Every measurement runs in
its own subprocess, so its peak memory (growth of the process's max RSS over what it held before
the first step, or CUDA's max allocated) is its own; the settings of one T run one after another
in a rotating order over several rounds, and the script prints medians and ratios to the
unsegmented run of the same T.

    python benchmarks/bench_time_segments.py --T 8 16 32 64 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import resource
import statistics
import subprocess
import sys
import time


def measure(T: int, segment: int, batch: int, iters: int, device: str) -> dict:
    import torch
    import torch.nn.functional as F

    from snnrobust.models import create_model
    from snnrobust.models.time_segments import time_segments

    torch.manual_seed(0)
    model = create_model("sew_resnet18", width=16, T=T, encoder="direct", stem="cifar", in_channels=3,
                         image_size=32, neuron="if", surrogate="atan:2", detach_reset=True).to(device).eval()
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 3, 32, 32, generator=gen).to(device)
    y = torch.randint(0, 10, (batch,), generator=gen).to(device)

    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    def step():
        z = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(F.cross_entropy(model(z), y), z)
        return g

    # checkpoint's first use imports its machinery: do that on a toy before the baseline, so
    # that the peak below is the gradient steps' alone (the first step is a warm-up, not timed)
    from torch.utils.checkpoint import checkpoint

    checkpoint(lambda v: v * 2, torch.ones(2, requires_grad=True), use_reentrant=False).sum().backward()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    with time_segments(model, segment or None):
        step()
        sync()
        t = time.perf_counter()
        for _ in range(iters):
            step()
        sync()
        wall = time.perf_counter() - t
    peak = (torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda")
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - rss0)
    return {"img_s": batch * iters / wall, "peak_mib": peak}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--T", type=int, nargs="+", default=[8, 16, 32, 64])
    ap.add_argument("--segments", help="comma-separated segment lengths (default: about sqrt(T) and T/2)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--iters", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        T, seg = (int(v) for v in a.child.split(","))
        print(json.dumps(measure(T, seg, a.batch, a.iters, a.device)))
        return
    import torch

    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
          f"torch {torch.__version__}, device {a.device}; SEW-ResNet-18 w16 32x32, batch {a.batch}, "
          f"{a.iters} input gradients per measurement, {a.rounds} round(s)", flush=True)
    print(f"{'T':>4} {'segment':>8} {'img/s':>8} {'peak MiB':>9} {'x time':>7} {'x memory':>9}", flush=True)
    for T in a.T:
        segs = ([int(s) for s in a.segments.split(",")] if a.segments
                else sorted({max(1, round(math.sqrt(T))), max(1, T // 2)}))
        settings = [0] + [s for s in segs if s < T]
        runs: dict[int, list[dict]] = {s: [] for s in settings}
        for r in range(a.rounds):
            order = settings[r % len(settings):] + settings[:r % len(settings)]
            for s in order:
                cmd = [sys.executable, __file__, "--child", f"{T},{s}", "--batch", str(a.batch), "--iters",
                       str(a.iters), "--device", a.device]
                out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
                runs[s].append(json.loads(out.strip().splitlines()[-1]))
        med = {s: {k: statistics.median(m[k] for m in runs[s]) for k in ("img_s", "peak_mib")} for s in settings}
        base = med[0]
        for s in settings:
            m = med[s]
            print(f"{T:>4} {s or 'all':>8} {m['img_s']:>8.1f} {m['peak_mib']:>9.0f} "
                  f"{base['img_s'] / m['img_s']:>7.2f} {m['peak_mib'] / base['peak_mib']:>9.2f}", flush=True)


if __name__ == "__main__":
    main()
