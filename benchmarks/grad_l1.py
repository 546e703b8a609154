"""Input-gradient L1 norm of trained checkpoints on the same test images: what SR (Liu et al.
2024) regularizes, measured on the model in eval mode.

For each of the first ``--n`` test images, ||grad_x f||_1 with f the two-way softmax of the true
logit against the largest other one (``snnrobust.defenses.sr``), through the model's own
surrogate. Prints each checkpoint's mean with a 95 % t interval, its median and the fraction of
exactly-zero gradients, and the per-image paired difference to the first checkpoint (mean,
95 % t interval), so "SR lowers the norm" is a statement about the same images.

    OMP_NUM_THREADS=1 nice -n 19 python benchmarks/grad_l1.py UNDEFENDED.pt SR.pt [MORE.pt ...] --n 200
"""

from __future__ import annotations

import argparse
import math


def grad_l1(path: str, n: int, batch: int):
    import torch

    from snnrobust.data import get_dataset
    from snnrobust.defenses.sr import largest_other, two_way_softmax
    from snnrobust.training import load_checkpoint

    model, ck = load_checkpoint(path)
    data = ck.get("data") or {}
    test = get_dataset(data.get("dataset", "mnist5k"), split_seed=data.get("split_seed", 0)).test
    x, y = test.batch(torch.arange(min(n, len(test))))
    out = []
    for s in range(0, len(y), batch):
        xb, yb = x[s:s + batch].clone().requires_grad_(True), y[s:s + batch]
        logits = model(xb)
        f = two_way_softmax(logits, yb, largest_other(logits, yb))
        (g,) = torch.autograd.grad(f.sum(), xb)
        out.append(g.flatten(1).abs().sum(1))
    return torch.cat(out).tolist(), ck


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoints", nargs="+", help="the first is the reference of the paired differences")
    ap.add_argument("--n", type=int, default=200, help="first N test images")
    ap.add_argument("--batch", type=int, default=50)
    args = ap.parse_args()

    import torch

    from snnrobust.analysis.paired import seed_differences, t_quantile
    from snnrobust.defenses import describe_defense

    torch.set_num_threads(1)
    ref = None
    for path in args.checkpoints:
        v, ck = grad_l1(path, args.n, args.batch)
        tc = ck.get("train_config") or {}
        m = sum(v) / len(v)
        sd = math.sqrt(sum((a - m) ** 2 for a in v) / (len(v) - 1))
        half = t_quantile(0.975, len(v) - 1) * sd / math.sqrt(len(v))
        med = sorted(v)[len(v) // 2]
        zero = sum(a == 0 for a in v) / len(v)
        acc = (ck.get("metrics") or [{}])[-1].get("test_accuracy", float("nan"))
        print(f"{path}\n  defense {describe_defense(tc.get('defense'), tc.get('method', 'bptt'))}; "
              f"clean test accuracy {acc:.4f}")
        print(f"  ||grad f||_1 over {len(v)} images: mean {m:.3f} [{m - half:.3f}, {m + half:.3f}], median {med:.3f}, "
              f"exactly zero {zero:.1%}")
        if ref is None:
            ref = v
        else:
            d = seed_differences(v, ref)
            print(f"  paired difference to the first checkpoint: {d.mean:+.3f} [{d.lo:+.3f}, {d.hi:+.3f}] "
                  f"({d.mean / (sum(ref) / len(ref)):+.0%} of its mean)")


if __name__ == "__main__":
    main()
