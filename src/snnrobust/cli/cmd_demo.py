"""`snnrobust demo`: the main job — the `pooling-tradeoff` quick study on mnist5k."""

from __future__ import annotations

import argparse

from ..errors import ConfigError
from ..studies import run_study

#: the demo's replicates: one keeps it within 20 minutes on a 2-core CPU (the recipe's quick size has 3)
DEMO_REPLICATES = 1


def register(sub) -> None:
    p = sub.add_parser("demo", help="run the pooling-tradeoff quick study on mnist5k and write its report",
                       description="The main job: train the default small SEW-ResNet (IF neurons, ATan alpha=2, phase "
                                   "coding T=8) with max and with average pooling on the embedded mnist5k dataset, "
                                   "attack both under Luu et al. 2025's protocol and the reliable suite, measure "
                                   "gradient sparsity, and write report.html. One training run per model (the "
                                   "study's quick size makes three; `snnrobust study pooling-tradeoff` adds the "
                                   "other two to the same folder, reusing these). Resumable: run it again after an "
                                   "interruption.")
    p.add_argument("--out", default="runs/study-pooling-tradeoff-quick", help="study folder")
    p.add_argument("--device", default="auto")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--replicates", type=int, default=DEMO_REPLICATES,
                   help=f"independently seeded training runs per model (default {DEMO_REPLICATES}: fits 20 minutes "
                        "on 2 cores; with one, claims are judged by the per-sample paired test only)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.replicates < 1:
        raise ConfigError(f"--replicates must be a positive integer, got {args.replicates}")
    paths = run_study("pooling-tradeoff", "quick", args.out, device=args.device, progress=not args.quiet,
                      replicates=args.replicates)
    print(f"demo finished. report: {paths['html']}")
    print(f"summary: {paths['markdown']}")
    return 0
