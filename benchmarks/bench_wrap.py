"""Overhead of snnrobust.wrap: one attack step (forward + input gradient of the CE loss) through the
wrapped model vs the same step written directly against the framework.

    OMP_NUM_THREADS=1 nice -n 19 python benchmarks/bench_wrap.py            # both frameworks
    OMP_NUM_THREADS=1 nice -n 19 python benchmarks/bench_wrap.py --framework snntorch --repeats 30

Rows per framework, timed interleaved (one of each per round, so load changes hit all alike),
median and interquartile range over ``--repeats`` rounds:

- ``direct``: reset, forward, ``torch.autograd.grad`` — what a user would write;
- ``wrapped``: the wrapped model called the same way (reset, encoding, readout inside);
- ``victim bptt``: ``Victim(wrapped).grad`` — the full attack step an attack runs (eval mode,
  estimator context entered and left, non-finite guard, loss per sample);
- ``victim bptt:atan:2``: the same with the surrogate swapped in (the reliable suite's form).

Overhead = median / median(direct) - 1. The models are the small ones of tests/test_foreign.py
(a SEW-ResNet in SpikingJelly, multi-step; a conv Leaky network in snnTorch, 4 steps), on
made-up 1x28x28 images.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

T = 4


def sj_model() -> nn.Module:
    from spikingjelly.activation_based import functional, layer, neuron, surrogate

    def sn():
        return neuron.IFNode(surrogate_function=surrogate.ATan(), detach_reset=True)

    class Block(nn.Module):
        def __init__(self, c: int) -> None:
            super().__init__()
            self.body = nn.Sequential(layer.Conv2d(c, c, 3, padding=1, bias=False), layer.BatchNorm2d(c), sn(),
                                      layer.Conv2d(c, c, 3, padding=1, bias=False), layer.BatchNorm2d(c), sn())

        def forward(self, s):
            return self.body(s) + s

    net = nn.Sequential(layer.Conv2d(1, 16, 3, padding=1, bias=False), layer.BatchNorm2d(16), sn(),
                        layer.MaxPool2d(2), Block(16), layer.MaxPool2d(2), Block(16),
                        layer.AdaptiveAvgPool2d(1), layer.Flatten(), layer.Linear(16, 10))
    functional.set_step_mode(net, "m")
    return net


def st_model() -> nn.Module:
    import snntorch as snn

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c1, self.l1 = nn.Conv2d(1, 16, 3, padding=1), snn.Leaky(beta=0.9, init_hidden=True)
            self.c2, self.l2 = nn.Conv2d(16, 16, 3, padding=1), snn.Leaky(beta=0.9, init_hidden=True)
            self.fc, self.l3 = nn.Linear(16 * 7 * 7, 10), snn.Leaky(beta=0.9, init_hidden=True, output=True)

        def forward(self, x):
            total = 0
            for _ in range(T):
                s = F.max_pool2d(self.l1(self.c1(x)), 2)
                s = F.max_pool2d(self.l2(self.c2(s)), 2)
                spk, mem = self.l3(self.fc(s.flatten(1)))
                total = total + mem
            return total

    return Net()


def direct_step(framework: str, net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    xx = x.clone().requires_grad_(True)
    if framework == "spikingjelly":
        from spikingjelly.activation_based import functional

        functional.reset_net(net)
        out = net(xx.unsqueeze(0).expand(T, *xx.shape)).mean(0)
    else:
        for m in net.modules():
            if hasattr(m, "reset_mem"):
                m.reset_mem()
        out = net(xx)
    (g,) = torch.autograd.grad(F.cross_entropy(out, y, reduction="sum"), xx)
    return g


def wrapped_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    xx = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(F.cross_entropy(model(xx), y, reduction="sum"), xx)
    return g


def bench(framework: str, batch: int, repeats: int) -> dict[str, list[float]]:
    import snnrobust
    from snnrobust.evaluation import Victim

    torch.manual_seed(0)
    net = (sj_model if framework == "spikingjelly" else st_model)().eval()
    model = snnrobust.wrap(net, time_steps=T) if framework == "spikingjelly" else snnrobust.wrap(net)
    x, y = torch.rand(batch, 1, 28, 28), torch.randint(0, 10, (batch,))
    v_own, v_swap = Victim(model, estimator="bptt"), Victim(model, estimator="bptt:atan:2")
    rows = {
        "direct": lambda: direct_step(framework, net, x, y),
        "wrapped": lambda: wrapped_step(model, x, y),
        "victim bptt": lambda: v_own.grad(x, y),
        "victim bptt:atan:2": lambda: v_swap.grad(x, y),
    }
    for fn in rows.values():  # warm-up (allocator, lazy imports)
        fn()
    times: dict[str, list[float]] = {k: [] for k in rows}
    for _ in range(repeats):
        for k, fn in rows.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--framework", nargs="+", default=["spikingjelly", "snntorch"])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}, batch {args.batch}, T {T}, {args.repeats} rounds")
    print(f"{'framework':<13} {'row':<20} {'median ms':>10} {'IQR ms':>15} {'overhead':>9}")
    for fw in args.framework:
        times = bench(fw, args.batch, args.repeats)
        base = statistics.median(times["direct"])
        for k, ts in times.items():
            q = statistics.quantiles(ts, n=4)
            med = statistics.median(ts)
            print(f"{fw:<13} {k:<20} {1e3 * med:>10.1f} {1e3 * q[0]:>7.1f}-{1e3 * q[2]:<7.1f} "
                  f"{100 * (med / base - 1):>+8.1f}%")


if __name__ == "__main__":
    main()
