"""`snnrobust convert`: an ANN checkpoint -> a spiking one (Sharmin et al. 2020's SNN-conv)."""

from __future__ import annotations

import argparse

from ..errors import ConfigError


def _grid(text: str) -> list[int]:
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise ConfigError(f"--timestep-grid must be comma-separated integers (e.g. 8,16,32), got {text!r}") from None


def register(sub) -> None:
    p = sub.add_parser(
        "convert", help="convert a trained ANN checkpoint into an SNN (IF neurons, per-layer thresholds)",
        description="Convert an ANN checkpoint (train one with `snnrobust train --method ann`) into an SNN as in "
                    "Sharmin et al. 2020: BatchNorm folded, IF neurons (leak 1, soft reset), thresholds by "
                    "layer-wise balancing or a percentile of the ANN's activations on training images. Writes "
                    "OUT/checkpoint.pt (an ordinary snnrobust checkpoint) and the conversion report "
                    "OUT/conversion.{json,csv,png}: clean accuracy of ANN and SNN over a grid of T, and per layer "
                    "the error of the SNN's rates.")
    p.add_argument("checkpoint", help="the ANN checkpoint")
    p.add_argument("--out", required=True, help="output folder (must not hold a checkpoint yet)")
    p.add_argument("--method", choices=["balance", "percentile"], default="balance",
                   help="thresholds: layer-wise balancing of the max input current (the paper's; default) or "
                        "data-based normalization by a percentile of the ANN's activations")
    p.add_argument("--percentile", type=float, default=99.9, help="percentile for --method percentile (99.9)")
    p.add_argument("--T", "-T", type=int, default=128, dest="T", help="timesteps of the converted SNN (128)")
    p.add_argument("--encoder", choices=["poisson", "direct"], default="poisson",
                   help="input: Poisson spikes of the normalized image (the paper's; default) or the analog image "
                        "every step")
    p.add_argument("--calibration-samples", type=int, default=512,
                   help="training images that set the thresholds (512, the paper's one batch)")
    p.add_argument("--timestep-grid", type=_grid, default=[8, 16, 32, 64, 128, 256],
                   help="T values of the conversion report (8,16,32,64,128,256)")
    p.add_argument("--eval-samples", type=int, default=1000, help="test images of the conversion report (1000)")
    p.add_argument("--dataset", help="dataset of the calibration and report images (default: the checkpoint's)")
    p.add_argument("--data-root", help="folder holding the dataset files")
    p.add_argument("--seed", type=int, default=0, help="seed of the calibration sample and the Poisson draws")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..conversion import ConversionConfig, convert_checkpoint
    from ..training import resolve_device

    cfg = ConversionConfig(method=args.method, percentile=args.percentile, T=args.T, encoder=args.encoder,
                           calibration_samples=args.calibration_samples, timestep_grid=args.timestep_grid,
                           eval_samples=args.eval_samples, seed=args.seed)
    device = resolve_device(args.device)
    say = None if args.quiet else (lambda line: print(line, flush=True))
    res = convert_checkpoint(args.checkpoint, args.out, cfg, dataset=args.dataset, data_root=args.data_root,
                             device=str(device), progress=say)
    print(res.report.table())
    th = ", ".join(f"{t:.4g}" for t in res.conversion.thresholds)
    print(f"thresholds per layer: [{th}]")
    print(f"checkpoint: {res.checkpoint} (T={cfg.T}); report: " + ", ".join(str(f) for f in res.files[:-1]))
    return 0
