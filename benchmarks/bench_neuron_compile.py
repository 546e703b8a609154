"""Does torch.compile pay off for the neuron's time loop on this CPU? One IF layer's forward and
backward (input [T, B, C, H, W], ATan(2) surrogate, hard detached reset): snnrobust's reference
loop (autograd step by step) against the same recurrence written as two plain functions (forward
keeping the surrogate derivative, backward through time by hand), eager and under
``torch.compile`` (inductor). Medians of CPU-process time over rounds; the compile time is printed.

    python benchmarks/bench_neuron_compile.py --shape 8 64 16 28 28 --threads 1
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch

from snnrobust.spiking.neurons import IFNode


def forward(x_seq: torch.Tensor, v: torch.Tensor, th: float, alpha: float):
    spikes, sgs = [], []
    for t in range(x_seq.shape[0]):
        h = v + x_seq[t]
        s = h >= th
        spikes.append(s)
        u = h - th
        sgs.append(alpha / 2 / (1 + (math.pi / 2 * alpha * u) ** 2))
        v = torch.where(s, 0.0, h)
    fired = torch.stack(spikes)
    return fired.to(x_seq.dtype), torch.stack(sgs), fired


def backward(g_spikes: torch.Tensor, sg: torch.Tensor, fired: torch.Tensor) -> torch.Tensor:
    gv = torch.zeros_like(g_spikes[0])
    out = []
    for t in range(sg.shape[0] - 1, -1, -1):
        gh = g_spikes[t] * sg[t] + gv.masked_fill(fired[t], 0.0)
        out.append(gh)
        gv = gh
    return torch.stack(out[::-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", type=int, nargs=5, default=[8, 64, 16, 28, 28])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    x = torch.randn(*args.shape)
    g = torch.randn(*args.shape)
    v0 = torch.zeros(args.shape[1:])
    cf, cb = torch.compile(forward, dynamic=False), torch.compile(backward, dynamic=False)
    t = time.perf_counter()
    s1, sg1, f1 = cf(x, v0, 1.0, 2.0)
    gx1 = cb(g, sg1, f1)
    print(f"compile {time.perf_counter() - t:.1f} s")
    node = IFNode(detach_reset=True, surrogate="atan:2")
    xr = x.clone().requires_grad_(True)
    node.reset_state()
    s_ref = node(xr)
    (gx_ref,) = torch.autograd.grad(s_ref, xr, g)
    print(f"spikes equal: {torch.equal(s_ref.detach(), s1)}; gradient max difference {(gx_ref - gx1).abs().max():.2e}")

    def reference() -> None:
        node.reset_state()
        torch.autograd.grad(node(xr), xr, g)

    def compiled() -> None:
        _, sg, f = cf(x, v0, 1.0, 2.0)
        cb(g, sg, f)

    def eager() -> None:
        _, sg, f = forward(x, v0, 1.0, 2.0)
        backward(g, sg, f)

    res: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        for name, fn in (("reference loop", reference), ("compiled", compiled), ("eager, same functions", eager)):
            fn()
            t = time.process_time()
            fn()
            fn()
            res.setdefault(name, []).append((time.process_time() - t) / 2)
    print(f"shape {args.shape}, {args.threads} thread(s), median of {args.rounds} rounds, forward + backward:")
    for name, v in res.items():
        print(f"  {name:<22} {statistics.median(v) * 1000:7.1f} ms")


if __name__ == "__main__":
    main()
