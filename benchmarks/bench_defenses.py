"""What each training-time defense costs against plain BPTT, side by side in one run.

The demo-size SEW-ResNet (``training.DEMO_MODEL``: 3 stages of 1 block, width 16, T 8, phase
coding, max pooling) trains on the first ``--n`` mnist5k training images in batches of
``--batch`` through the trainer's own ``train_step``, once per configuration per round; the
rounds go round-robin over the configurations (so a change in the machine's load hits all of
them alike) and each configuration's time is the median over ``--repeats`` rounds, after one
warm-up round. Every configuration starts from the same weights each round. Both wall time and
CPU time of this process are reported: on a shared machine wall time is an upper bound, while
CPU time (one thread) is what the computation itself took.

    OMP_NUM_THREADS=1 nice -n 19 python benchmarks/bench_defenses.py --n 256 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

CONFIGS: dict[str, dict | None] = {
    "plain BPTT": None,
    "sr (lambda 0.002, h 0.01)": {"name": "sr"},
    "fast-at (eps 0.1, FGSM from a random start)": {"name": "fast-at", "eps": 0.1},
    "pgd-at (eps 0.1, 7 steps)": {"name": "pgd-at", "eps": 0.1, "steps": 7},
    "pgd-at (eps 0.1, 3 steps)": {"name": "pgd-at", "eps": 0.1, "steps": 3},
    "rat (eps 2/255, FGSM, beta 0.004)": {"name": "rat"},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=256, help="training images per timed pass")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--only", nargs="*", help="configuration names to run (default: all)")
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args()

    import torch

    from snnrobust.data import get_dataset
    from snnrobust.defenses import defense_from_config, resolve_defense
    from snnrobust.models import create_model
    from snnrobust.training import DEMO_MODEL
    from snnrobust.training.trainer import train_step

    torch.set_num_threads(args.threads)
    splits = get_dataset("mnist5k")
    x_all, y_all = splits.train.batch(torch.arange(args.n))
    opts = {k: v for k, v in DEMO_MODEL.items() if k != "name"}
    torch.manual_seed(0)
    init = create_model(DEMO_MODEL["name"], in_channels=1, image_size=28, num_classes=10, **opts).state_dict()
    configs = {k: v for k, v in CONFIGS.items() if not args.only or k in args.only}

    def one_pass(spec) -> tuple[float, float]:
        model = create_model(DEMO_MODEL["name"], in_channels=1, image_size=28, num_classes=10, **opts)
        model.load_state_dict(init)
        model.train()
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        scaler = torch.amp.GradScaler("cpu", enabled=False)
        defense = defense_from_config(resolve_defense(spec))
        if defense is not None:
            defense.start_epoch(0)
        t0, c0 = time.perf_counter(), time.process_time()
        for s in range(0, args.n, args.batch):
            train_step(model, opt, scaler, x_all[s:s + args.batch], y_all[s:s + args.batch], use_amp=False,
                       defense=defense)
        return time.perf_counter() - t0, time.process_time() - c0

    wall: dict[str, list[float]] = {k: [] for k in configs}
    cpu: dict[str, list[float]] = {k: [] for k in configs}
    for r in range(args.repeats + 1):
        for name, spec in configs.items():
            w, c = one_pass(spec)
            if r > 0:  # round 0 is the warm-up
                wall[name].append(w)
                cpu[name].append(c)
    have_base = "plain BPTT" in configs
    base_w = statistics.median(wall["plain BPTT"]) if have_base else float("nan")
    base_c = statistics.median(cpu["plain BPTT"]) if have_base else float("nan")
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {args.threads} thread(s); "
          f"{args.n} mnist5k images, batch {args.batch}, median of {args.repeats}")
    print(f"{'configuration':<46} {'wall s':>7} {'x plain':>7} {'CPU s':>7} {'x plain':>7}  wall runs (s)")
    rows = []
    for name in configs:
        mw, mc = statistics.median(wall[name]), statistics.median(cpu[name])
        rows.append({"configuration": name, "wall_s": mw, "wall_x_plain": mw / base_w, "cpu_s": mc,
                     "cpu_x_plain": mc / base_c, "images_per_wall_s": args.n / mw, "wall_runs_s": wall[name],
                     "cpu_runs_s": cpu[name]})
        print(f"{name:<46} {mw:7.2f} {mw / base_w:7.2f} {mc:7.2f} {mc / base_c:7.2f}  "
              + ", ".join(f"{t:.2f}" for t in wall[name]))
    if args.json:
        from snnrobust.io import atomic_open

        with atomic_open(args.json, "w") as f:
            json.dump({"n": args.n, "batch": args.batch, "repeats": args.repeats, "threads": args.threads,
                       "torch": str(torch.__version__), "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
