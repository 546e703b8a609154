"""snnrobust against SpikingJelly and the ReLU limit on identical networks, side by side.

One network, three neuron implementations:

- ``snnrobust``: the model as snnrobust builds it (multi-step IF neurons, ATan(2) surrogate,
  hard reset to 0, detached reset; BPTT through the reference time loop, autograd step by step);
- ``snnrobust-fused``: the same with memory-lean BPTT through the fused neuron function
  (``snnrobust.spiking.functional.fused_bptt``);
- ``snnrobust-kernel``: fused neurons through the compiled CPU kernel
  (``snnrobust.spiking.cpu_kernel.enable()``; built before the timed steps);
- ``snnrobust-lean``: fused neurons and every residual block recomputed in backward
  (``snnrobust.models.recompute.recompute_blocks``): the least memory snnrobust trains in;
- ``spikingjelly``: the same model with every snnrobust neuron replaced by SpikingJelly 2.0's
  multi-step ``IFNode`` with the same settings (its torch path, the one that runs on CPU;
  reset before every forward, as snnrobust resets its own);
- ``relu-limit``: the same model with ReLU in place of every neuron on the same [T, B, ...]
  tensors: the convolution / BatchNorm / pooling work any T-step SNN must do, with neurons that
  cost next to nothing. Throughput relative to it is the share of time not spent in neurons.

Input is direct (the analog image at every step) so the encoder is the same for all three.
Every measurement runs in its own subprocess (so its peak memory is its own); the three
implementations of one configuration run one after another in a rotating order, for several
rounds, and the script prints medians over rounds and their ratios.

    pip install --no-deps "spikingjelly>=2,<3"       # the benchmark extra, without torchvision
    python benchmarks/bench_vs_spikingjelly.py --rounds 3
    python benchmarks/bench_vs_spikingjelly.py --device cuda --rounds 5
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time

IMPLS = ("snnrobust", "snnrobust-fused", "snnrobust-kernel", "snnrobust-lean", "spikingjelly", "relu-limit")
# (label, width, T, batch)
CONFIGS = [
    ("sew_resnet18 w16 T4 b64", 16, 4, 64),
    ("sew_resnet18 w16 T8 b32", 16, 8, 32),
    ("sew_resnet18 w64 T4 b32", 64, 4, 32),
    ("sew_resnet18 w64 T8 b32", 64, 8, 32),
]


def build(impl: str, width: int, T: int, device: str):
    import torch
    from torch import nn

    from snnrobust.models import create_model
    from snnrobust.spiking.neurons import SpikingNeuron

    torch.manual_seed(0)
    opts = dict(width=width, T=T, encoder="direct", stem="cifar", in_channels=3, image_size=32,
                neuron="if", surrogate="atan:2", detach_reset=True)
    if impl == "relu-limit":
        return create_model("sew_resnet18", spiking=False, **opts).to(device)
    model = create_model("sew_resnet18", **opts)
    if impl == "snnrobust-kernel":
        from snnrobust.spiking import cpu_kernel

        cpu_kernel.enable()
    if impl in ("snnrobust-fused", "snnrobust-kernel", "snnrobust-lean"):
        for m in model.modules():
            if isinstance(m, SpikingNeuron):
                m.fused = True
    if impl == "spikingjelly":
        from spikingjelly.activation_based import neuron as sj_neuron
        from spikingjelly.activation_based import surrogate as sj_surrogate

        class SJNeuron(nn.Module):
            """SpikingJelly's multi-step IFNode, reset before each forward (snnrobust resets its own
            neurons per forward the same way)."""

            def __init__(self) -> None:
                super().__init__()
                atan = sj_surrogate.ATan(alpha=2.0)
                self.node = sj_neuron.IFNode(v_threshold=1.0, v_reset=0.0, surrogate_function=atan,
                                             detach_reset=True, step_mode="m")

            def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
                self.node.reset()
                return self.node(x_seq)

        for parent in list(model.modules()):
            for name, child in list(parent.named_children()):
                if isinstance(child, SpikingNeuron):
                    setattr(parent, name, SJNeuron())
        if not any(isinstance(m, SJNeuron) for m in model.modules()):
            raise SystemExit("no snnrobust neuron found to replace")
    return model.to(device)


def measure(impl: str, width: int, T: int, batch: int, device: str, iters: int) -> dict:
    from snnrobust.models.recompute import recompute_blocks

    model = build(impl, width, T, device)
    with recompute_blocks(model, impl == "snnrobust-lean"):
        return _measure(model, batch, device, iters)


def _measure(model, batch: int, device: str, iters: int) -> dict:
    import torch
    from steps import timed_steps  # benchmarks/steps.py, beside this script

    gen = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 3, 32, 32, generator=gen).to(device)
    y = torch.randint(0, 10, (batch,), generator=gen).to(device)
    opt = torch.optim.SGD(model.parameters(), 0.01, momentum=0.9)

    sync, train_step, grad_step = timed_steps(model, x, y, opt, device)

    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    out = {}
    for name, step, mode in (("train", train_step, True), ("grad", grad_step, False)):
        model.train(mode)
        step()  # warm-up
        sync()
        t = time.perf_counter()
        for _ in range(iters):
            step()
        sync()
        out[name] = batch * iters / (time.perf_counter() - t)
    if device.startswith("cuda"):
        out["peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
    else:
        # growth of the process's max RSS over what it held before the first step: the
        # training step's activations, gradients and optimizer state, not the torch import
        out["peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - rss0
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--iters", type=int, default=2, help="timed steps per measurement (after one warm-up)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--only", help="substring of a configuration label")
    ap.add_argument("--impls", default=",".join(IMPLS),
                    help="comma-separated implementations to run (spikingjelly and relu-limit are always run: "
                         "the ratios need them)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        impl, label = args.child.split("|")
        _, width, T, batch = next(c for c in CONFIGS if c[0] == label)
        print(json.dumps(measure(impl, width, T, batch, args.device, args.iters)))
        return
    import torch

    try:
        import spikingjelly  # noqa: F401
    except ImportError:
        raise SystemExit('SpikingJelly is not installed: pip install --no-deps "spikingjelly>=2,<3" loguru')
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
          f"python {platform.python_version()}, torch {torch.__version__}, device {args.device}; "
          f"{args.rounds} rounds, {args.iters} timed steps each; medians over rounds")
    print(f"{'configuration':<26} {'implementation':<14} {'train img/s':>11} {'grad img/s':>10} {'peak MiB':>9} "
          f"{'train/limit':>11} {'grad/limit':>10} {'mem/sj':>7}")
    for label, *_ in CONFIGS:
        if args.only and args.only not in label:
            continue
        impls = tuple(i for i in IMPLS if i in args.impls.split(",") or i in ("spikingjelly", "relu-limit"))
        runs: dict[str, list[dict]] = {i: [] for i in impls}
        for r in range(args.rounds):
            k = r % len(impls)
            order = impls[k:] + impls[:k]  # rotate who goes first
            for impl in order:
                p = subprocess.run([sys.executable, __file__, "--child", f"{impl}|{label}", "--device", args.device,
                                    "--iters", str(args.iters)], capture_output=True, text=True)
                if p.returncode != 0:
                    tail = p.stderr.strip().splitlines()[-1] if p.stderr.strip() else p.returncode
                    raise SystemExit(f"{label} / {impl} failed: {tail}")
                runs[impl].append(json.loads(p.stdout.strip().splitlines()[-1]))
        med = {i: {k: statistics.median(m[k] for m in runs[i]) for k in ("train", "grad", "peak_mib")} for i in impls}
        lim, sj = med["relu-limit"], med["spikingjelly"]
        for impl in impls:
            m = med[impl]
            print(f"{label:<26} {impl:<14} {m['train']:>11.1f} {m['grad']:>10.1f} {m['peak_mib']:>9.0f} "
                  f"{m['train'] / lim['train']:>11.2f} {m['grad'] / lim['grad']:>10.2f} "
                  f"{m['peak_mib'] / sj['peak_mib']:>7.2f}", flush=True)


if __name__ == "__main__":
    main()
