"""`snnrobust demo`: the main job on the embedded mnist5k dataset."""

from __future__ import annotations

import argparse

from ..training import DEMO_MODEL, TrainConfig, train

DEMO_EPOCHS = 12


def register(sub) -> None:
    p = sub.add_parser("demo", help="train the default SEW-ResNet on mnist5k and report its accuracy",
                       description="Train the default small SEW-ResNet (max pooling, IF neurons, ATan alpha=2, "
                                   "phase coding T=8) on the embedded mnist5k dataset and print its test accuracy.")
    p.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    p.add_argument("--epochs", type=int, default=DEMO_EPOCHS)
    p.add_argument("--pool", choices=["max", "avg"], default="max")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    model = dict(DEMO_MODEL, pool=args.pool)
    cfg = TrainConfig(model=model, dataset="mnist5k", epochs=args.epochs, out=args.out)
    result = train(cfg, resume=True, progress=not args.quiet)
    print(f"demo: {model['name']} ({args.pool} pooling) test accuracy {result.test_accuracy:.4f} on mnist5k; "
          f"checkpoint {result.checkpoint}")
    return 0
