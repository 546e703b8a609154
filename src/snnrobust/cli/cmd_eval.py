"""`snnrobust eval`: clean accuracy and spike rate per layer of a checkpoint."""

from __future__ import annotations

import argparse
import json

from ..data import get_dataset
from ..data.events import frames_for_model
from ..training import evaluate_clean, load_checkpoint, resolve_device


def register(sub) -> None:
    p = sub.add_parser("eval", help="clean accuracy and per-layer spike rates of a checkpoint",
                       description="Evaluate a checkpoint on the test split it was trained with.")
    p.add_argument("checkpoint", nargs="?", help="a checkpoint written by `snnrobust train` (or --model-file)")
    p.add_argument("--data-root", help="folder holding the dataset files")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    from .foreign_model import add_options

    add_options(p)
    p.set_defaults(func=run)


def model_kind(config) -> str:
    """"ANN" for a model without spiking neurons (the ReLU twin, e.g. ``train --method ann``),
    else "SNN (T=.., <encoder> input, <neuron> neurons)"."""
    if not config.spiking:
        return "ANN"
    return f"SNN (T={config.T}, {config.encoder} input, {config.neuron.upper()} neurons)"


def run(args: argparse.Namespace) -> int:
    if args.model_file or not args.checkpoint:  # your own SNN (SpikingJelly, snnTorch, PyTorch)
        from .foreign_model import run_eval

        return run_eval(args)
    device = resolve_device(args.device)
    model, ckpt = load_checkpoint(args.checkpoint, map_location=device)
    data = ckpt.get("data", {})
    splits = get_dataset(data.get("dataset", "mnist5k"), root=args.data_root, split_seed=data.get("split_seed", 0),
                         frames=frames_for_model(model))
    res = evaluate_clean(model, splits.test, args.batch_size, device, spike_rates=True, progress=True)
    tc = ckpt.get("train_config") if isinstance(ckpt.get("train_config"), dict) else None
    if args.json:
        print(json.dumps({"checkpoint": args.checkpoint, "kind": "SNN" if model.config.spiking else "ANN",
                          "dataset": splits.info.name, **res.to_dict(),
                          **({"provenance": ckpt["provenance"]} if ckpt.get("provenance") else {}),
                          **({"defense": tc.get("defense")} if tc is not None else {})}, indent=2))
        return 0
    d = res.to_dict()
    print(f"{args.checkpoint}: {model.config.name}, {model_kind(model.config)}, on {splits.info.name} test split "
          f"({res.n} images)")
    print(f"clean accuracy {d['accuracy']:.4f}  (95% CI {d['ci95'][0]:.4f}-{d['ci95'][1]:.4f}, "
          f"{res.correct}/{res.n})   loss {res.loss:.4f}")
    if tc is not None:  # how it was trained: a defense and its settings, or none
        from ..defenses import describe_defense

        print(f"defense: {describe_defense(tc.get('defense'), tc.get('method', 'bptt'))}")
    if res.spike_rates:
        print("spike rate per layer (spikes per neuron per timestep):")
        width = max(len(k) for k in res.spike_rates)
        for name, rate in res.spike_rates.items():
            print(f"  {name:<{width}}  {rate:.4f}")
    if ckpt.get("provenance"):  # converted (snnrobust convert) and fine-tuned (train --init-from) models
        from ..conversion.provenance import describe_step

        print("provenance (oldest first):")
        for i, step in enumerate(ckpt["provenance"], 1):
            print(f"  {i}. {describe_step(step)}")
    return 0
