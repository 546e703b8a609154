"""Training and input-gradient throughput (images/s) and peak memory.

Each configuration runs in a fresh subprocess so that its peak memory (max RSS on CPU,
max allocated on CUDA) is its own. Throughput is the median over ``--repeats`` timed
blocks of ``--iters`` iterations each, after warm-up; all configurations run side by side
in one invocation so their ratios are comparable.

    python benchmarks/bench_train.py                 # demo model + SEW-ResNet-18 (T=4, T=8)
    python benchmarks/bench_train.py --device cuda   # on a GPU
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

CONFIGS = {
    "demo (sew_resnet [1,1,1] w16, 28x28x1, T=8, phase)": dict(
        model=dict(name="sew_resnet", layers=[1, 1, 1], width=16, T=8, encoder="phase", stem_pool=True,
                   pool="max", in_channels=1, image_size=28), batch=64),
    "sew_resnet18 cifar stem, 32x32x3, T=4, batch 32": dict(
        model=dict(name="sew_resnet18", width=64, T=4, encoder="phase", stem="cifar", in_channels=3, image_size=32),
        batch=32),
    "sew_resnet18 cifar stem, 32x32x3, T=8, batch 32": dict(
        model=dict(name="sew_resnet18", width=64, T=8, encoder="phase", stem="cifar", in_channels=3, image_size=32),
        batch=32),
}


def measure(spec: dict, device: str, iters: int, repeats: int) -> dict:
    import torch
    from steps import timed_steps  # benchmarks/steps.py, beside this script

    from snnrobust.models import create_model

    torch.manual_seed(0)
    opts = dict(spec["model"])
    model = create_model(opts.pop("name"), **opts).to(device)
    B, C, N = spec["batch"], opts["in_channels"], opts["image_size"]
    x = torch.rand(B, C, N, N, device=device)
    y = torch.randint(0, 10, (B,), device=device)
    opt = torch.optim.Adam(model.parameters(), 1e-3)

    sync, train_step, grad_step = timed_steps(model, x, y, opt, device)

    out = {}
    for name, step, mode in (("train", train_step, True), ("input_grad", grad_step, False)):
        model.train(mode)
        for _ in range(2):
            step()
        sync()
        rates = []
        for _ in range(repeats):
            t = time.perf_counter()
            for _ in range(iters):
                step()
            sync()
            rates.append(B * iters / (time.perf_counter() - t))
        out[f"{name}_images_per_s"] = statistics.median(rates)
    if device.startswith("cuda"):
        out["peak_mem_mib"] = torch.cuda.max_memory_allocated() / 2**20
        out["peak_mem_kind"] = "CUDA max allocated"
    else:
        out["peak_mem_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        out["peak_mem_kind"] = "process max RSS"
    out["params"] = sum(p.numel() for p in model.parameters())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--only", help="substring of a config name")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(measure(CONFIGS[args.child], args.device, args.iters, args.repeats)))
        return
    import torch

    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
          f"python {platform.python_version()}, torch {torch.__version__}, device {args.device}")
    print(f"{'configuration':<52} {'params':>9} {'train img/s':>12} {'grad img/s':>11} {'peak MiB':>9}")
    for name in CONFIGS:
        if args.only and args.only not in name:
            continue
        r = subprocess.run([sys.executable, __file__, "--child", name, "--device", args.device, "--iters",
                            str(args.iters), "--repeats", str(args.repeats)], capture_output=True, text=True)
        if r.returncode != 0:
            print(f"{name:<52} failed: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode}")
            continue
        m = json.loads(r.stdout.strip().splitlines()[-1])
        print(f"{name:<52} {m['params']:>9,} {m['train_images_per_s']:>12.1f} {m['input_grad_images_per_s']:>11.1f} "
              f"{m['peak_mem_mib']:>9.0f}  ({m['peak_mem_kind']})", flush=True)


if __name__ == "__main__":
    main()
