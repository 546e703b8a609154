"""`snnrobust attack CHECKPOINT --suite NAME | --attack NAME [options]`: attack a trained
checkpoint on its own test split, print a table, write the results JSON next to it.

A thin layer over :func:`snnrobust.evaluation.engine.evaluate`; see docs/robustness.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..data.splits import indices_sha256
from ..errors import ConfigError, SnnRobustError
from ..io import file_sha256

#: Test images attacked when --n is not given (fewer when the test split is smaller).
DEFAULT_N = 1000

EPILOG = """examples:
  snnrobust attack run/model.pt --suite reliable --budget quick
  snnrobust attack run/model.pt --suite seed-luu2025 --replicate-seed-code
  snnrobust attack run/model.pt --attack pgd --eps 8/255 --steps 100 --estimator bptt hart:1.0
  snnrobust attack --list
"""


def register(sub) -> None:
    p = sub.add_parser("attack", help="adversarial robustness of a checkpoint (suites, attacks, diagnostics)",
                       description="Attack a checkpoint on the test split it was trained with; print a table "
                                   "and write <ckpt>.attack-<suite|attack>-<budget>.json next to it.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", nargs="?", help="a checkpoint written by `snnrobust train`")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--suite", help="seed-luu2025 | seed-sharmin2020 | standard | reliable")
    what.add_argument("--attack", help="one attack: fgsm, rfgsm, pgd, mifgsm, sapgd, apgd-ce, apgd-t, fab-t, "
                                       "square, noise, transfer")
    what.add_argument("--list", action="store_true", help="list suites, budgets, attacks and estimators")
    p.add_argument("--attack-option", action="append", metavar="KEY=VALUE", default=[],
                   help="an option of --attack (repeatable), e.g. step_size=0.01 or loss=dlr")
    p.add_argument("--eps", help="budget in pixel units, e.g. 8/255 or 0.03 (default: the suite's protocol eps, "
                                 "else 8/255)")
    p.add_argument("--norm", default="linf", help="linf (default) or l2; on binary event frames also l0 (--eps = "
                   "flipped event slots, attack eventflip) or retime (--eps = frames an event may move, attack retime)")
    p.add_argument("--budget", default="quick", help="quick (CPU, default), thorough (GPU) or exhaustive (the "
                                                     "reference: no cascade, every estimator x attack; "
                                                     "not for daily use)")
    p.add_argument("--n", "--num-images", dest="n", type=int, default=None,
                   help="test images to attack (the first N; default 1000, or the whole test split if smaller); "
                        "under torchrun write --num-images (torchrun reads --n as its own option)")
    p.add_argument("--start", type=int, default=0,
                   help="index of the first test image to attack (default 0): --start 100 --n 100 attacks images "
                        "100-199, e.g. to check a result on a second set of images")
    p.add_argument("--estimator", nargs="+", metavar="SPEC",
                   help="gradient estimators, e.g. bptt bptt:triangle:0.5 ste bptr rga hart:1.0 pdsg assg:0.4 "
                        "source-ann (BPDA through a converted SNN's source ANN) (replace the suite's list)")
    p.add_argument("--eot", type=int, help="gradient samples per step for stochastic models")
    p.add_argument("--vote", type=int, help="forward passes per prediction (majority vote; default 1, or 10 for "
                                            "stochastic models)")
    p.add_argument("--steps", type=int, help="iterations of the iterative attacks (overrides the budget)")
    p.add_argument("--restarts", type=int, help="restarts of the iterative attacks (overrides the budget)")
    p.add_argument("--perturb", choices=["pixels", "spikes"], default="pixels",
                   help="pixels (default) or spikes: add the perturbation to the encoded spike tensor "
                        "(replication of Luu et al. 2025's code only; labelled in every output)")
    p.add_argument("--bn-mode", choices=["eval", "train"], default="eval",
                   help="eval (default) or train: craft with BatchNorm batch statistics "
                        "(replication of Luu et al. 2025's code only)")
    p.add_argument("--replicate-seed-code", action="store_true",
                   help="seed-luu2025 only: spikes + BN train + PGD abort at gradient norm < 1e-6, "
                        "as Luu et al. 2025's code")
    p.add_argument("--transfer-from", nargs="+", metavar="CKPT", default=[],
                   help="source checkpoints for transfer attacks (e.g. an independently trained model)")
    p.add_argument("--ann-twin-transfer", action="store_true",
                   help="add the ANN twin carrying this SNN's weights as a transfer source")
    p.add_argument("--eps-sweep", help="comma-separated eps values for the robustness curve, e.g. "
                                       "2/255,4/255,8/255; 'none' to skip the suite's default curve")
    diag = p.add_mutually_exclusive_group()
    diag.add_argument("--diagnostics", dest="diagnostics", action="store_true", default=None,
                      help="run the masking diagnostics (default: only with --suite reliable)")
    diag.add_argument("--no-diagnostics", dest="diagnostics", action="store_false",
                      help="skip the masking diagnostics")
    p.add_argument("--data-root", help="folder holding the dataset files")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    p.add_argument("--out", help="results JSON path (default: next to the checkpoint)")
    p.add_argument("--seed", type=int, default=0, help="seed of random starts and stochastic encoders")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--neuron-kernel", action="store_true",
                   help="run snnrobust neurons through the compiled CPU kernel (built once, about a minute; needs a "
                        "C++ compiler and ninja): the same forward values, gradients to float rounding, faster")
    p.add_argument("--channels-last", action="store_true",
                   help="run convolutions and pooling on channels-last batches (0.88x the time of the demo model's "
                        "reliable suite with --neuron-kernel; slower on single small batches): the same values up "
                        "to the convolutions' float rounding, so a sample's outcome may change")
    p.add_argument("--time-segment", type=int, metavar="STEPS",
                   help="back-propagate in checkpointed segments of STEPS timesteps: memory grows like T / STEPS + "
                        "STEPS instead of T (long-T models), at about one more forward per gradient; the same "
                        "gradients (estimators that average over all T steps run unsegmented)")
    from .foreign_model import add_options

    add_options(p)
    p.set_defaults(func=run)


def _print_lists() -> int:
    from ..estimators import ESTIMATORS
    from ..attacks.registry import list_attacks
    from ..evaluation.suites import BUDGETS, list_suites

    print("suites:")
    for k, v in list_suites().items():
        print(f"  {k:<18} {v}")
    print("budgets:")
    for k, b in BUDGETS.items():
        print(f"  {k:<18} {b.description}")
    print("attacks:")
    for k, v in list_attacks().items():
        print(f"  {k:<18} {v}")
    print("gradient estimators:")
    for k, v in ESTIMATORS.items():
        print(f"  {k:<18} {v}")
    return 0


def parse_eps_list(text: str | None) -> list[float] | None:
    from ..evaluation.threat import parse_eps

    if text is None:
        return None
    if text.strip().lower() in ("none", "off", ""):
        return []
    return [parse_eps(t) for t in text.split(",") if t.strip()]


def _validate_names(args: argparse.Namespace) -> None:
    """Fail fast, before loading anything, on names and numbers the user mistyped."""
    from ..attacks.registry import get_attack, ATTACKS
    from ..evaluation.suites import get_budget, get_suite

    if args.suite is None and args.attack is None:
        raise ConfigError("give --suite NAME or --attack NAME (see `snnrobust attack --list`)")
    if args.suite is not None:
        get_suite(args.suite)
    if args.attack is not None and args.attack not in ATTACKS:
        get_attack(args.attack)
    get_budget(args.budget)
    for flag in ("n", "eot", "vote", "steps", "restarts", "batch_size", "time_segment"):
        v = getattr(args, flag)
        if v is not None and v < 1:
            raise ConfigError(f"--{flag.replace('_', '-')} must be a positive integer, got {v}")
    if args.seed < 0:
        raise ConfigError(f"--seed must be >= 0, got {args.seed}")
    if args.start < 0:
        raise ConfigError(f"--start must be >= 0 (the index of the first test image), got {args.start}")
    if args.estimator:
        from ..estimators import get_estimator

        for spec in args.estimator:
            get_estimator(spec)
    if args.attack_option and args.attack is None:
        raise ConfigError("--attack-option applies to --attack only")


def _red_alerts(table: str) -> str:
    """The table with its INCOMPLETE / FAILED / WARNING lines in red on a terminal (not in
    pipes or files, nor with NO_COLOR set)."""
    import os

    if not sys.stdout.isatty() or os.environ.get("NO_COLOR"):
        return table
    alert = ("INCOMPLETE", "FAILED", "WARNING")
    return "\n".join(f"\033[31m{line}\033[0m" if any(w in line for w in alert) else line
                     for line in table.splitlines())


def ann_twin_source(model):
    """The ANN twin (ReLU for every spiking neuron, analog input, T = 1) carrying ``model``'s
    weights: an untrained, weight-shared proxy used as a transfer source."""
    from ..models import SpikingClassifier, ann_twin, build_from_config

    if not isinstance(model, SpikingClassifier):
        raise ConfigError("--ann-twin-transfer needs a snnrobust SpikingClassifier checkpoint")
    twin = build_from_config(ann_twin(model.config))
    try:
        twin.load_state_dict(model.state_dict(), strict=True)
    except RuntimeError as e:
        raise ConfigError(f"the ANN twin does not take this model's weights ({str(e).splitlines()[0][:120]}); "
                          "give a trained source with --transfer-from CKPT instead") from None
    return twin.to(next(model.parameters()).device).eval()


def journal_path(out: Path) -> Path:
    """Where the batches of the evaluation written to ``out`` are journalled."""
    return out.with_name(out.name + ".journal.sqlite")


#: arguments that do not change an evaluation's outcome (how it is shown, where it is written)
_NOT_OUTCOME = ("func", "command", "no_progress", "out", "device", "list", "data_root")


def journal_key(args: argparse.Namespace, model_info: dict, n: int) -> dict:
    """What decides every batch's outcome: the command's settings, the model (and transfer
    sources) by content, the number of images and the snnrobust version."""
    from .. import __version__

    settings = {k: v for k, v in sorted(vars(args).items()) if k not in _NOT_OUTCOME}
    sources = [file_sha256(p) for p in args.transfer_from]
    return {"settings": settings, "model": model_info.get("sha256") or model_info, "transfer_sources": sources,
            "n": n, "version": __version__}


def run(args: argparse.Namespace) -> int:
    if args.list:
        return _print_lists()
    _validate_names(args)
    if args.model_file and args.checkpoint:
        raise ConfigError("give either a CHECKPOINT or --model-file, not both")
    if not args.checkpoint and not args.model_file:
        raise ConfigError("give the CHECKPOINT to attack (a file written by `snnrobust train`), or your own model "
                          "with --model-file FILE.py:FUNCTION --weights W.pt --dataset NAME")
    if args.model_file and not args.dataset:
        raise ConfigError("--model-file needs --dataset NAME (e.g. mnist5k)")

    import numpy as np
    import torch

    from ..evaluation.engine import run_evaluation
    from ..models.time_segments import time_segments
    from ..spiking.cpu_kernel import kernel_used
    from ..spiking.functional import channels_last
    from ..evaluation.request import EvaluationRequest
    from ..evaluation.results import result_path, write_result
    from ..evaluation.threat import ThreatModel
    from ..data import get_dataset
    from ..data.events import frames_for_model
    from ..store.hashing import config_hash
    from ..store.journal import BatchJournal
    from ..training import load_checkpoint, resolve_device
    from .options import parse_key_values

    ckpt_path = Path(args.checkpoint or args.weights or args.model_file.rpartition(":")[0])
    # without --eps the request takes the suite's protocol eps (else 8/255): decided there, once
    threat = {"norm": args.norm, "perturb": args.perturb, "bn_mode": args.bn_mode}
    if args.eps is not None:
        threat["eps"] = args.eps
    ThreatModel.from_dict(threat)  # a bad --eps/--norm fails before the checkpoint is loaded
    eps_sweep = parse_eps_list(args.eps_sweep)
    attack_options = parse_key_values(args.attack_option, "--attack-option")

    from .. import distributed

    # under torchrun each process attacks its share of every batch list on its own GPU (or the CPU)
    device = resolve_device(args.device) if not distributed.active() else torch.device(distributed.device())
    if args.model_file:  # the user's own SNN (SpikingJelly, snnTorch, PyTorch), wrapped
        from .foreign_model import load as load_foreign

        model, foreign_info = load_foreign(args, device)
        ckpt: dict = {"data": {"dataset": args.dataset}}
    else:
        model, ckpt = load_checkpoint(ckpt_path, map_location=device)
    data = ckpt.get("data") or {}
    dataset = data.get("dataset", "mnist5k")
    splits = get_dataset(dataset, root=args.data_root, split_seed=int(data.get("split_seed", 0)),
                         frames=frames_for_model(model))
    test = splits.test
    start = args.start
    if start >= len(test):  # a negative start was refused before the checkpoint was read
        raise ConfigError(f"--start {start} is outside the test split's {len(test)} images; give 0 to {len(test) - 1}")
    n = min(DEFAULT_N if args.n is None else args.n, len(test) - start)
    n_note = None
    if args.n is not None and args.n > n:  # say so: a smaller sample than asked widens every interval
        left = f", {len(test) - start} from image {start}" if start else ""
        n_note = f"--n {args.n} asked, the test split has {len(test)} images{left}: attacking {n}"
        print(f"note: {n_note}", file=sys.stderr)
    indices = torch.arange(start, start + n)
    x, y = test.batch(indices)

    sources = []
    for src in args.transfer_from:
        m, _ = load_checkpoint(src, map_location=device)
        sources.append((Path(src).stem, m))
    if args.ann_twin_transfer:
        sources.append(("ann-twin", ann_twin_source(model)))

    model_info = {"class": type(model).__name__, "config": model.config.to_dict(),
                  "checkpoint": str(ckpt_path), "sha256": file_sha256(ckpt_path),
                  "transfer_sources": [label for label, _ in sources]}
    if args.model_file:
        model_info = {**foreign_info, "transfer_sources": [label for label, _ in sources]}
    ann_source = ckpt.get("ann_source")  # a converted or hybrid SNN's source ANN (estimator source-ann)
    if isinstance(ann_source, dict):
        model_info["ann_source"] = {k: ann_source.get(k) for k in ("checkpoint", "sha256")}
    data_info = {"dataset": splits.info.name, "split": "test", "n": n, "n_requested": args.n, "start": start,
                 "indices": f"first {n} of the test split" if start == 0 else
                            f"images {start} to {start + n - 1} of the test split",
                 "indices_sha256": indices_sha256(np.arange(start, start + n)),
                 "info": splits.info.to_dict()}
    request = EvaluationRequest(
        suite=args.suite, attack=args.attack, attack_options=attack_options, threat=threat, budget=args.budget,
        estimators=args.estimator, eot=args.eot, vote=args.vote, steps=args.steps, restarts=args.restarts,
        batch_size=args.batch_size, eps_sweep=eps_sweep, transfer_sources=sources or None,
        progress=not args.no_progress and distributed.is_main(), seed=args.seed, diagnostics=args.diagnostics,
        replicate_seed_code=args.replicate_seed_code, model_info=model_info, data_info=data_info, device=device,
        source_ann=ann_source)
    plan = request.plan
    name = plan.name + ("-replication" if plan.replication else "")
    # another slice of the test split gets its own default file, so it never replaces the first one's
    name_of_slice = name + (f"-from{start}" if start else "")
    out = Path(args.out) if args.out else result_path(ckpt_path, name_of_slice, plan.budget.name)
    journal = BatchJournal(journal_path(out), config_hash(journal_key(args, model_info, n)))
    with kernel_used(args.neuron_kernel), time_segments(model, args.time_segment), \
            channels_last(model, args.channels_last):
        result = run_evaluation(model, x, y, request, journal=journal)
    if args.channels_last:
        result.notes.append("convolutions and pooling ran on channels-last batches (--channels-last): the same "
                            "values up to float rounding")
    if args.time_segment:
        result.notes.append(f"gradients back-propagated in checkpointed segments of {args.time_segment} timesteps "
                            "(--time-segment): the same gradients to float rounding")
    if args.neuron_kernel:
        result.notes.append("neurons ran through the compiled CPU kernel (--neuron-kernel): forward values as the "
                            "reference loop's, gradients equal to float rounding")
    if n_note:
        result.notes.append(n_note)
    if journal.reused:
        result.notes.append(f"resumed: {journal.reused} finished batches were read back from {journal.path}")
    journal.close()
    distributed.barrier()
    if not distributed.is_main():  # rank 0 writes and reports; every rank returns the same status
        return 0 if result.complete else 1
    write_result(result, out)
    if result.complete:  # the result is written: its batches are no longer needed
        journal.discard()
    print(_red_alerts(result.table()))
    print(f"results written to {out}")
    if not result.complete:  # written and shown above; the exit status must not say "all done"
        raise SnnRobustError(f"evaluation INCOMPLETE: {result.incomplete_summary()}; the robust accuracy is an "
                             f"upper bound (results marked complete: false in {out}); re-run to retry")
    return 0
