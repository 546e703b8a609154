"""`snnrobust gradients CHECKPOINT | --model-file FILE.py:FUNCTION ...`: per-operation gradient
sparsity (:func:`snnrobust.analysis.sparsity.op_gradient_stats`) of a checkpoint or of your own
wrapped SNN, on the first N images of the test split; prints the table, writes a JSON."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import ConfigError


def register(sub) -> None:
    p = sub.add_parser("gradients", help="per-operation input-gradient sparsity of a checkpoint or your own SNN",
                       description="Gradient sparsity per operation (conv, BN, neuron, pooling, linear) at the first "
                                   "FGSM step, on the first N test images; writes <model>.gradients.json.")
    p.add_argument("checkpoint", nargs="?", help="a checkpoint written by `snnrobust train`")
    p.add_argument("--n", type=int, default=100, help="test images (default 100)")
    p.add_argument("--estimator", help="an attacker's gradient estimator, e.g. bptt:triangle:0.5 (default: the "
                                       "model's own surrogate)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--data-root", help="folder holding the dataset files")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", help="JSON path (default: next to the checkpoint or weights)")
    from .foreign_model import add_options

    add_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if bool(args.checkpoint) == bool(args.model_file):
        raise ConfigError("give a CHECKPOINT or --model-file FILE.py:FUNCTION (with --dataset), one of them")
    if args.model_file and not args.dataset:
        raise ConfigError("--model-file needs --dataset NAME (e.g. mnist5k)")
    if args.n < 1:
        raise ConfigError(f"--n must be >= 1, got {args.n}")
    import torch

    from ..analysis.sparsity import op_gradient_stats
    from ..data import get_dataset
    from ..data.events import frames_for_model
    from ..evaluation.results import write_json_atomic
    from ..training import load_checkpoint, resolve_device

    device = resolve_device(args.device)
    if args.model_file:
        from .foreign_model import load as load_foreign

        model, _ = load_foreign(args, device)
        dataset, split_seed = args.dataset, 0
        anchor = Path(args.weights or args.model_file.rpartition(":")[0])
    else:
        model, ckpt = load_checkpoint(args.checkpoint, map_location=device)
        data = ckpt.get("data") or {}
        dataset, split_seed = data.get("dataset", "mnist5k"), int(data.get("split_seed", 0))
        anchor = Path(args.checkpoint)
    test = get_dataset(dataset, root=args.data_root, split_seed=split_seed, frames=frames_for_model(model)).test
    n = min(args.n, len(test))
    x, y = test.batch(torch.arange(n))
    report = op_gradient_stats(model, x, y, batch_size=args.batch_size, estimator=args.estimator)
    print(report.table())
    out = Path(args.out) if args.out else anchor.with_name(anchor.stem + ".gradients.json")
    write_json_atomic(report.to_dict(), out)
    print(f"written to {out}")
    return 0
