"""`snnrobust study NAME [--size quick|full] [--check]`: run a seed paper's experiment end to end."""

from __future__ import annotations

import argparse

from ..studies import list_recipes, run_study
from ..errors import ConfigError, SnnRobustError


def register(sub) -> None:
    p = sub.add_parser("study", help="run a named study (train, attack, analyse, report); resumable",
                       description="Run a study recipe: trains what it needs, attacks it, measures gradient sparsity, "
                                   "and writes report.html and report.md. Re-running resumes and recomputes nothing "
                                   "done.")
    p.add_argument("name", nargs="?", help="study name (see --list) or a recipe .yaml path")
    p.add_argument("--list", action="store_true", help="list the studies and their sizes")
    p.add_argument("--size", default="quick", help="quick (CPU, mnist5k) or full (GPU, the papers' settings)")
    p.add_argument("--out", help="study folder (default runs/study-NAME-SIZE)")
    p.add_argument("--data-root", help="folder holding the dataset files (CIFAR for --size full)")
    p.add_argument("--device", default="auto")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--replicates", type=int, default=None,
                   help="independently seeded training runs per variant (default: the recipe's, 3 at quick size); "
                        "replicate 0 is the same model whatever the number, so adding replicates later reuses it")
    p.add_argument("--check", action="store_true",
                   help="only check that the study starts: load the data, build every model, time one training "
                        "step, build every attack and take one input gradient per estimator; writes nothing")
    p.add_argument("--check-batch", type=int, default=None,
                   help="images in the timed training step of --check (default: the recipe's batch size)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.list or not args.name:
        for r in list_recipes():
            print(f"  {r.name:<26} seed {r.seed}: {r.title}")
            for size, spec in r.sizes.items():
                print(f"  {'':<26}   --size {size}: {spec.get('note', '')}")
        return 0
    if args.check_batch is not None and args.check_batch < 1:
        raise ConfigError(f"--check-batch must be a positive integer, got {args.check_batch}")
    if args.replicates is not None and args.replicates < 1:
        raise ConfigError(f"--replicates must be a positive integer, got {args.replicates}")
    if args.check:
        from ..studies.preflight import check_study, format_checks

        rows = check_study(args.name, args.size, args.data_root, args.device, batch=args.check_batch)
        print(format_checks(rows))
        print(f"study {args.name} --size {args.size} starts: every model, attack and estimator checked")
        return 0
    paths = run_study(args.name, args.size, args.out, args.data_root, args.device, progress=not args.quiet,
                      replicates=args.replicates)
    print(f"report: {paths['html']}")
    print(f"summary: {paths['markdown']}")
    if paths.get("incomplete"):  # the report is written; the exit status says it is not the full study
        raise SnnRobustError(f"study incomplete: an attack crashed in {', '.join(paths['incomplete'])}; "
                             "the report marks it, re-run the same command to retry")
    return 0
