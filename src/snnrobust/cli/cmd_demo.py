"""`snnrobust demo`: the main job — the `pooling-tradeoff` quick study on mnist5k."""

from __future__ import annotations

import argparse

from ..studies import run_study


def register(sub) -> None:
    p = sub.add_parser("demo", help="run the pooling-tradeoff quick study on mnist5k and write its report",
                       description="The main job: train the default small SEW-ResNet (IF neurons, ATan alpha=2, phase "
                                   "coding T=8) with max and with average pooling on the embedded mnist5k dataset, "
                                   "attack both under Luu et al. 2025's protocol and the reliable suite, measure "
                                   "gradient sparsity, and write report.html. Resumable: run it again after an "
                                   "interruption.")
    p.add_argument("--out", default="runs/study-pooling-tradeoff-quick", help="study folder")
    p.add_argument("--device", default="auto")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    paths = run_study("pooling-tradeoff", "quick", args.out, device=args.device, progress=not args.quiet)
    print(f"demo finished. report: {paths['html']}")
    print(f"summary: {paths['markdown']}")
    return 0
