"""`snnrobust train`: train a model by BPTT (or its ANN twin, ``--method ann``) from a YAML config and/or flags."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..training import CHECKPOINT_NAME, DEMO_MODEL, TrainConfig, train
from ..errors import ConfigError
from .options import parse_key_values

FLAGS = {  # flag -> TrainConfig key
    "method": "method", "dataset": "dataset", "data_root": "data_root", "download": "download",
    "split_seed": "split_seed", "epochs": "epochs",
    "batch_size": "batch_size", "optimizer": "optimizer", "lr": "lr", "weight_decay": "weight_decay",
    "momentum": "momentum", "schedule": "schedule", "seed": "seed", "device": "device",
    "augment": "augment", "max_train_samples": "max_train_samples", "out": "out",
    "init_from": "init_from", "init_weights": "init_weights", "threshold_scale": "threshold_scale",
    "amsgrad": "amsgrad",
}


def register(sub) -> None:
    p = sub.add_parser("train", help="train a spiking model by BPTT, or its ANN twin (--method ann)",
                       description="Train a model by BPTT, or (--method ann) its ANN twin with Sharmin et al. "
                                   "2020's ANN recipe. Settings come from --config (YAML), then flags override. "
                                   "A checkpoint is written atomically to OUT/checkpoint.pt after every epoch.")
    p.add_argument("--config", help="YAML file with TrainConfig keys (model, dataset, epochs, lr, ...)")
    p.add_argument("--model", help="model name (see `snnrobust models`); default: the demo SEW-ResNet")
    p.add_argument("--model-opt", "-m", action="append", metavar="KEY=VALUE",
                   help="model option, repeatable (e.g. -m width=16 -m pool=avg -m T=8)")
    p.add_argument("--method", choices=["bptt", "ann"],
                   help="bptt (default): the model as configured; ann: its ANN twin (ReLU, direct input, T 1) "
                        "with the ANN defaults of Sharmin et al. 2020 for every optimizer setting not given "
                        "(SGD, lr 1e-2, momentum 0.9, weight decay 5e-4, step decay)")
    p.add_argument("--init-from", metavar="CONVERTED_CKPT",
                   help="hybrid SNN-BP fine-tuning (Sharmin et al. 2020): start from a checkpoint made by "
                        "`snnrobust convert` — its weights, its thresholds x --threshold-scale, LIF neurons with "
                        "--leak, the paper's surrogate relative to each threshold; Adam with amsgrad, lr 1e-4, "
                        "weight decay 5e-4 where not given; model, dataset and split from the checkpoint; "
                        "-m T=N sets the timesteps")
    p.add_argument("--init-weights", metavar="CKPT",
                   help="warm start: begin from the weights of a checkpoint made by `snnrobust train` (e.g. to "
                        "fine-tune it under --defense); model, dataset and split default to the checkpoint's; "
                        "optimizer, schedule and epochs start afresh; the source is recorded in the provenance")
    p.add_argument("--threshold-scale", type=float, help="--init-from: multiply the converted thresholds (0.7)")
    p.add_argument("--leak", type=float, help="--init-from: leak factor of the LIF neurons (0.99)")
    p.add_argument("--amsgrad", action="store_true", default=None, help="Adam with amsgrad (default with --init-from)")
    p.add_argument("--defense", metavar="NAME",
                   help="train with a defense: sr (Liu et al. 2024's gradient-sparsity regularizer), pgd-at "
                        "(PGD adversarial training), fast-at (FGSM from a random start, Wong et al. 2020; the CPU "
                        "choice), rat (SNN-RAT, Ding et al. 2022), or none; also YAML `defense: {name: ..., ...}`")
    p.add_argument("--defense-option", "-d", action="append", metavar="KEY=VALUE",
                   help="defense option, repeatable (e.g. -d lambda=0.002; -d eps=8/255 -d steps=7 "
                        "-d estimator=bptt:triangle:0.5 -d eot=10; rat: -d beta=0.004)")
    p.add_argument("--dataset", help="dataset name (see `snnrobust datasets`), default mnist5k")
    p.add_argument("--data-root", help="folder holding the dataset files")
    p.add_argument("--download", action="store_true", default=None,
                   help="download a missing dataset (fashion-mnist, cifar10/100) where the network allows")
    p.add_argument("--split-seed", type=int)
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--optimizer", choices=["adam", "sgd"])
    p.add_argument("--lr", type=float)
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--momentum", type=float)
    p.add_argument("--schedule", choices=["cosine", "step", "none"])
    p.add_argument("--seed", type=int)
    p.add_argument("--device", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--augment", choices=["auto", "none", "hflip"])
    p.add_argument("--max-train-samples", type=int, help="train on the first N training images only")
    p.add_argument("--no-amp", action="store_true", help="disable mixed precision on CUDA")
    p.add_argument("--out", help="output folder (default runs/train)")
    p.add_argument("--resume", action="store_true", help="continue the interrupted run in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def resume_note(out: Path) -> None:
    """Say, before anything else is printed, that --resume found nothing to resume: otherwise a
    mistyped --out would silently train from scratch while the user believes it continued."""
    if (out / CHECKPOINT_NAME).is_file() or (out.exists() and not out.is_dir()):
        return  # something to resume, or an OUT that is a file, which train() rejects in one line
    where = f"in {out}" if out.is_dir() else f"in {out} (the folder does not exist yet)"
    print(f"--resume: no checkpoint {where}; starting from scratch", flush=True)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    overrides = {key: getattr(args, flag) for flag, key in FLAGS.items() if getattr(args, flag, None) is not None}
    if args.no_amp:
        overrides["amp"] = False
    model_opts = parse_key_values(args.model_opt, "model option")
    if getattr(args, "leak", None) is not None:
        model_opts["leak"] = args.leak
    if args.config:
        base = TrainConfig.from_yaml(args.config).to_dict()
    else:
        base = {"model": dict(DEMO_MODEL)}
    init_from = overrides.get("init_from") or base.get("init_from")
    if init_from:
        _hybrid_base(base, init_from, args.config)
    init_weights = overrides.get("init_weights") or base.get("init_weights")
    if init_weights and not args.model:
        _warm_base(base, init_weights, args.config)
    model = dict(base.get("model") or {})
    if args.model:
        model = {"name": args.model}
    new_encoder = model_opts.get("encoder", model.get("encoder"))
    if "encoder_options" not in model_opts and new_encoder != model.get("encoder"):
        # the base's encoder options belong to its encoder (phase's K means nothing to direct)
        model.pop("encoder_options", None)
    model.update(model_opts)
    base["model"] = model
    base.update(overrides)
    _defense_args(base, args)
    return TrainConfig.from_dict(base)


def _defense_args(base: dict, args: argparse.Namespace) -> None:
    """--defense NAME replaces the YAML file's defense (its options too, unless it names the same
    one); each -d KEY=VALUE sets one option of the defense in force."""
    name = getattr(args, "defense", None)
    opts = parse_key_values(getattr(args, "defense_option", None), "defense option")
    current = base.get("defense")
    current = {"name": current} if isinstance(current, str) else (dict(current) if isinstance(current, dict) else None)
    if name is not None:
        current = current if current is not None and current.get("name") == name else {"name": name}
    if opts:
        if current is None or str(current.get("name")).lower() == "none":
            raise ConfigError("--defense-option needs a defense: add --defense NAME (sr, pgd-at, fast-at, rat)")
        current.update(opts)
    if name is not None or opts:
        base["defense"] = current


def _given(config: "str | None") -> dict:
    """The keys the YAML file itself writes (already validated by TrainConfig.from_yaml)."""
    import yaml

    return (yaml.safe_load(Path(config).read_text()) or {}) if config else {}


def _hybrid_base(base: dict, init_from: str, config: "str | None") -> None:
    """--init-from: the model, dataset and split default to the converted checkpoint's (a
    model, dataset or split written in the YAML file stays, and must then match)."""
    from ..conversion.hybrid import read_converted

    ckpt = read_converted(init_from)
    given = _given(config)
    if "model" not in given:
        base["model"] = {"name": ckpt["model_config"]["name"]}
    data = ckpt.get("data") or {}
    for key in ("dataset", "split_seed"):
        if key not in given and key in data:
            base[key] = data[key]


def _warm_base(base: dict, init_weights: str, config: "str | None") -> None:
    """--init-weights: the model, dataset and split default to the source checkpoint's (those
    written in the YAML file stay; -m options apply on top)."""
    from ..training.warm_start import read_source

    ckpt = read_source(init_weights)
    given = _given(config)
    tc = ckpt.get("train_config") or {}
    if "model" not in given and isinstance(tc.get("model"), dict):
        base["model"] = dict(tc["model"])
    for key in ("dataset", "split_seed"):
        if key not in given and key in tc:
            base[key] = tc[key]
    if "method" not in given and tc.get("method") == "ann":  # an ANN goes on as an ANN
        base["method"] = "ann"


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    if args.resume:
        resume_note(Path(cfg.out))
    for line in cfg.method_summary():
        print(line, flush=True)
    if cfg.defense is not None:
        from ..defenses import describe_defense

        print(f"defense {describe_defense(cfg.defense, cfg.method)}", flush=True)
    result = train(cfg, resume=args.resume, progress=not args.quiet)
    last = result.metrics[-1] if result.metrics else {}
    print(f"test accuracy {last.get('test_accuracy', float('nan')):.4f} after {last.get('epoch', 0)} epochs; "
          f"checkpoint: {result.checkpoint}")
    return 0
