"""A process of the distributed tests (tests/test_distributed.py), run as a plain process or by
torchrun: ``eval`` evaluates the tiny SEW-ResNet on 64 seeded images, ``train`` trains a
BatchNorm-free spiking VGG5 for four steps; each process writes what it saw to ``OUT/rank<r>.json``.

Usage: python tests/dist_worker.py OUT eval [--journal FILE] [--batch-size N]
       python tests/dist_worker.py OUT train --train-out FOLDER
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from conftest import make_tiny_sew  # noqa: E402

from snnrobust import distributed  # noqa: E402

N = 64


def data(n: int = N) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(11)
    x = torch.rand(n, 1, 12, 12, generator=gen)
    y = torch.randint(0, 10, (n,), generator=gen)
    return x, y


def model_and_labels():
    model = make_tiny_sew(3).eval()
    x, _ = data()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.mul_(8.0)  # untrained weights x 8: neurons fire and decisions vary between images
        y = model(x).argmax(1)  # clean-correct everywhere, so every sample is attacked
    return model, x, y


def run_eval(args) -> dict:
    from snnrobust.evaluation import ThreatModel, evaluate
    from snnrobust.evaluation.suites import get_budget
    from snnrobust.store.journal import BatchJournal

    model, x, y = model_and_labels()
    journal = BatchJournal(args.journal, "tiny-eval") if args.journal else None
    budget = get_budget("quick").override(steps=3, square_queries=40, diag_n=16, diag_steps=3, diag_more_steps=6)
    r = evaluate(model, x, y, suite="reliable", budget=budget, threat=ThreatModel("linf", 0.02), eps_sweep=[],
                 batch_size=args.batch_size, progress=False, journal=journal, diagnostics=True)
    d = r.to_dict()
    return {"per_sample": d["worst_case"]["per_sample"], "robust": r.robust_accuracy.k,
            "attacks": [(a.id, a.broken) for a in r.attacks],
            "diagnostics": [(g.name, g.status, g.numbers) for g in r.diagnostics],
            "journal": journal.to_dict() if journal else None}


def run_train(args) -> dict:
    from snnrobust.training import TrainConfig, train

    cfg = TrainConfig.from_dict({
        "model": {"name": "vgg5", "width": 8, "T": 2, "encoder": "direct", "fc_hidden": 32, "threshold": 0.05},
        "dataset": "mnist5k", "epochs": 1, "batch_size": 30, "max_train_samples": 100, "optimizer": "sgd",
        "lr": 0.05, "momentum": 0.9, "weight_decay": 0.0, "schedule": "none", "seed": 5, "device": "cpu",
        "out": args.train_out, "eval_batch_size": 500})
    result = train(cfg, progress=False)
    state = {k: v.flatten()[:50].tolist() for k, v in result.model.state_dict().items() if v.is_floating_point()}
    return {"metrics": result.metrics[-1], "state": state, "checkpoint": str(result.checkpoint)}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("what", choices=["eval", "train"])
    p.add_argument("--train-out")
    p.add_argument("--journal")
    p.add_argument("--batch-size", type=int, default=16)
    args = p.parse_args()
    torch.set_num_threads(1)
    distributed.init_from_env()
    work = run_eval if args.what == "eval" else run_train
    out = {"rank": distributed.rank(), "world": distributed.world_size(), **work(args)}
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / f"rank{distributed.rank()}.json").write_text(json.dumps(out, default=str))


if __name__ == "__main__":
    main()
