"""ANN-to-SNN conversion (Sharmin et al. 2020's SNN-conv): API and checkpoint writer.

The converted SNN is the ANN's architecture with BatchNorm folded into the layers before it,
every ReLU replaced by an integrate-and-fire neuron (leak 1, soft reset by subtraction) with
its own threshold, and the input encoded as spikes (Poisson, as in the paper) or fed as the
analog image every step (direct). Thresholds come from layer-wise balancing or from a
percentile of the ANN's activations; ``balance.py`` explains both and the weight scaling they
imply. The result is an ordinary snnrobust model: ``ModelConfig.thresholds`` holds the
per-layer thresholds, so ``load_checkpoint``, eval, attacks and studies use it unchanged.
Its surrogate (used by BPTT attacks and fine-tuning) is seed 001's
(0.3/theta) max(0, 1 - |U/theta - 1|) relative to each layer's threshold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import torch

from .. import __version__
from ..errors import ConfigError
from ..io import check_output_folder
from ..models import ModelConfig, SpikingClassifier, model_from_dict
from .balance import balance_thresholds, percentile_thresholds, scale_weights
from .fold import fold_batchnorm, folded_config
from .provenance import ann_source, prior_steps
from .report import ConversionReport, measure_conversion
from .structure import Stage, trace_stages

METHODS = ("balance", "percentile")
ENCODERS = ("poisson", "direct")
#: Seed 001's surrogate, relative to each layer's threshold (ModelConfig.surrogate_relative).
PAPER_SURROGATE = "triangle:1:0.3"
CHECKPOINT_NAME = "checkpoint.pt"

Progress = Optional[Callable[[str], None]]


@dataclass
class ConversionConfig:
    """Settings of one conversion (validated at construction; one-line errors).

    ``T``: timesteps of the converted model (and of threshold balancing);
    ``calibration_samples``: training images used to set thresholds (Sharmin et al.: one
    batch of 512); ``timestep_grid``: the T values of the conversion report;
    ``eval_samples``: test images of the report; ``batch_size``/``chunk``: images and
    timesteps simulated at once (memory only, results do not depend on them)."""

    method: str = "balance"
    percentile: float = 99.9
    T: int = 128
    calibration_samples: int = 512
    timestep_grid: list[int] = field(default_factory=lambda: [8, 16, 32, 64, 128, 256])
    encoder: str = "poisson"
    eval_samples: int = 1000
    seed: int = 0
    batch_size: int = 128
    chunk: int = 16

    def __post_init__(self) -> None:
        def pos_int(name: str) -> None:
            v = getattr(self, name)
            if not (isinstance(v, int) and not isinstance(v, bool) and v >= 1):
                raise ConfigError(f"conversion option {name} must be a positive integer, got {v!r}")

        if self.method not in METHODS:
            raise ConfigError(f"conversion method must be {' or '.join(METHODS)}, got {self.method!r}")
        if self.encoder not in ENCODERS:
            raise ConfigError(f"conversion encoder must be {' or '.join(ENCODERS)}, got {self.encoder!r}")
        p = self.percentile
        if not (isinstance(p, (int, float)) and not isinstance(p, bool) and math.isfinite(p) and 0 < p <= 100):
            raise ConfigError(f"conversion percentile must be in (0, 100], got {p!r}")
        for name in ("T", "calibration_samples", "eval_samples", "batch_size", "chunk"):
            pos_int(name)
        if not (isinstance(self.seed, int) and self.seed >= 0):
            raise ConfigError(f"conversion seed must be a non-negative integer, got {self.seed!r}")
        grid = self.timestep_grid
        if not (isinstance(grid, (list, tuple)) and grid
                and all(isinstance(t, int) and not isinstance(t, bool) and t >= 1 for t in grid)):
            raise ConfigError(f"conversion timestep grid must list positive integers (e.g. 8,16,32), got {grid!r}")
        self.timestep_grid = sorted(set(grid))


@dataclass
class Conversion:
    """A converted SNN (eval mode), the folded ANN it was made from, and what was done."""

    model: SpikingClassifier
    ann: SpikingClassifier
    stages: list[Stage]
    thresholds: list[float]
    record: dict  # the "conversion" provenance step


def check_ann(ann: SpikingClassifier, where: str = "the model") -> None:
    cfg = ann.config
    if cfg.spiking:
        raise ConfigError(f"{where} is an SNN (spiking=true); conversion needs an ANN — train one with "
                          f"`snnrobust train --method ann`")
    if cfg.encoder != "direct":
        raise ConfigError(f"{where} is an ANN with '{cfg.encoder}' input; conversion needs an ANN trained on "
                          "the analog image (encoder direct)")


def check_calibration(ann: SpikingClassifier, x: torch.Tensor, what: str = "calibration images") -> None:
    c, n = ann.config.in_channels, ann.config.image_size
    shape = list(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
    if not (isinstance(x, torch.Tensor) and x.dim() == 4 and x.shape[0] >= 1 and list(x.shape[1:]) == [c, n, n]
            and x.is_floating_point()):
        raise ConfigError(f"{what} must be a float tensor [N, {c}, {n}, {n}] (the ANN's input shape), got {shape}")
    if float(x.min()) < 0 or float(x.max()) > 1:
        raise ConfigError(f"{what} must have pixels in [0, 1], got {float(x.min()):.3g}..{float(x.max()):.3g}")


def _encoding(cfg: ModelConfig, encoder: str) -> dict:
    """The SNN's encoder and normalization for the ANN config ``cfg``. Poisson spikes stand
    for the ANN's input value: unsigned Bernoulli(x) for an ANN without normalization, seed
    001's signed code on x^ = (x - mean) / std for one with (x^ must stay in [-1, 1])."""
    if encoder == "direct":
        return dict(encoder="direct", encoder_options={}, normalize_mean=cfg.normalize_mean,
                    normalize_std=cfg.normalize_std)
    mean, std = cfg.normalize_mean, cfg.normalize_std
    if mean is None and std is None:
        return dict(encoder="poisson", encoder_options={}, normalize_mean=None, normalize_std=None)
    means, stds = mean or [0.0] * cfg.in_channels, std or [1.0] * cfg.in_channels
    if len(set(means)) > 1 or len(set(stds)) > 1:
        raise ConfigError("Poisson input needs one normalization mean/std for all channels, the ANN has "
                          f"mean {means} std {stds}; use --encoder direct")
    m, s = float(means[0]), float(stds[0])
    lo, hi = (0 - m) / s, (1 - m) / s
    if lo < -1 - 1e-9 or hi > 1 + 1e-9:
        raise ConfigError(f"Poisson input encodes values in [-1, 1], but the ANN's normalization (mean {m:g}, std "
                          f"{s:g}) maps pixels to [{lo:.3g}, {hi:.3g}]; use --encoder direct")
    return dict(encoder="poisson", encoder_options={"signed": True, "mean": m, "std": s},
                normalize_mean=None, normalize_std=None)


def snn_config(folded: ModelConfig, encoder: str, T: int, thresholds: list[float]) -> ModelConfig:
    """The converted SNN's config: the folded ANN's architecture with IF neurons (leak 1, soft
    reset), per-layer ``thresholds``, seed 001's threshold-relative surrogate, ``T`` steps."""
    d = folded.to_dict()
    d.update(spiking=True, neuron="if", leak=None, reset="soft", v_reset=0.0, T=T, threshold=1.0,
             thresholds=[float(t) for t in thresholds], surrogate=PAPER_SURROGATE, surrogate_relative=True,
             **_encoding(folded, encoder))
    return ModelConfig.from_dict(d)


def preflight(ann: SpikingClassifier, cfg: ConversionConfig, where: str = "the model") -> None:
    """Every check that needs no data: an ANN, a convertible chain, a foldable BatchNorm and an
    input encoding the SNN can reproduce (one-line ConfigError naming the problem)."""
    check_ann(ann, where)
    stages = trace_stages(ann)
    folded = folded_config(ann.config, any(s.bn is not None for s in stages))
    _encoding(folded, cfg.encoder)


def convert_model(ann: SpikingClassifier, calibration: torch.Tensor, cfg: ConversionConfig,
                  progress: Progress = None) -> Conversion:
    """Convert the ANN ``ann`` (eval mode is used; it is not changed) with thresholds set on
    ``calibration`` images [N, C, H, W] in [0, 1]. Returns the SNN and the conversion record."""
    check_ann(ann)
    check_calibration(ann, calibration)
    device = next(ann.parameters()).device
    calibration = calibration.to(device)
    was_training = ann.training
    ann.eval()
    try:
        original_stages = trace_stages(ann)
        folded, stages = fold_batchnorm(ann)
    finally:
        ann.train(was_training)
    n_hidden = sum(1 for s in stages if s.act is not None)
    work = model_from_dict(snn_config(folded.config, cfg.encoder, cfg.T, [1.0] * n_hidden).to_dict()).to(device)
    work.eval()
    if [(s.weight, s.act) for s in trace_stages(work)] != [(s.weight, s.act) for s in stages]:
        raise ConfigError(f"cannot convert model '{ann.config.name}': its spiking form has a different layer "
                          "layout from its ANN form")
    lams: list[float]
    if cfg.method == "balance":
        thresholds = balance_thresholds(work, folded, stages, calibration, cfg.T, cfg.batch_size, cfg.chunk,
                                        cfg.seed, progress)
        lams = [float(v) for v in torch.tensor(thresholds, dtype=torch.float64).cumprod(0)]
    else:
        thresholds, lams = percentile_thresholds(folded, stages, calibration, cfg.percentile)
        scale_weights(work, folded, stages, thresholds)
    final_cfg = snn_config(folded.config, cfg.encoder, cfg.T, thresholds)
    snn = model_from_dict(final_cfg.to_dict()).to(device)
    snn.load_state_dict(work.state_dict(), strict=True)
    snn.eval()
    record = {
        "step": "conversion", "method": cfg.method, "T": cfg.T, "calibration_samples": int(calibration.shape[0]),
        "percentile": cfg.percentile if cfg.method == "percentile" else None,
        "encoder": final_cfg.encoder, "encoder_options": dict(final_cfg.encoder_options),
        "neuron": "if", "leak": 1.0, "reset": "soft", "surrogate": f"{PAPER_SURROGATE} (relative to each threshold)",
        "thresholds": [float(t) for t in thresholds], "layer_scale": lams,
        "output_scale": lams[-1], "bn_folded": sum(1 for s in original_stages if s.bn is not None),
        "seed": cfg.seed,
    }
    return Conversion(snn, folded, stages, [float(t) for t in thresholds], record)


@dataclass
class ConvertResult:
    checkpoint: Path
    conversion: Conversion
    report: ConversionReport
    files: list[Path]


def _calibration_images(train_set, n: int, seed: int) -> torch.Tensor:
    """The first ``n`` training images of a permutation seeded by ``seed`` (all when fewer)."""
    order = torch.randperm(len(train_set), generator=torch.Generator().manual_seed(seed))[:n]
    x, _ = train_set.batch(order)
    return x


def convert_checkpoint(ann_path: "str | Path", out: "str | Path", cfg: Optional[ConversionConfig] = None, *,
                       dataset: Optional[str] = None, data_root: Optional[str] = None, device: str = "cpu",
                       progress: Progress = None) -> ConvertResult:
    """Convert the ANN checkpoint ``ann_path`` into ``out/checkpoint.pt`` plus the conversion
    report (``out/conversion.{json,csv,png}``). Calibration images come from the training
    split of the checkpoint's dataset (or ``dataset``), the report's images from its test
    split. Every check runs before anything is written; on an error nothing is."""
    from ..data import get_dataset
    from ..training.checkpoint import load_checkpoint, save_checkpoint

    cfg = cfg or ConversionConfig()
    out = check_output_folder(out, "--out")
    target = out / CHECKPOINT_NAME
    if target.exists():
        raise ConfigError(f"{target} already exists; choose another --out")
    ann, ckpt = load_checkpoint(ann_path, map_location=device)
    preflight(ann, cfg, where=f"{ann_path}")
    data = dict(ckpt.get("data") or {})
    name = dataset or data.get("dataset", "mnist5k")
    split_seed = data.get("split_seed", 0) if name == data.get("dataset", "mnist5k") else 0
    splits = get_dataset(name, root=data_root, split_seed=split_seed)
    calib = _calibration_images(splits.train, cfg.calibration_samples, cfg.seed)
    check_calibration(ann, calib, what=f"calibration images from {splits.info.name}")
    source = ann_source(ckpt, ann_path)
    conv = convert_model(ann, calib, cfg, progress)
    n_eval = min(cfg.eval_samples, len(splits.test))
    x_eval, y_eval = splits.test.batch(torch.arange(n_eval))
    x_eval, y_eval = x_eval.to(device), y_eval.to(device)
    report = measure_conversion(conv.ann, conv.model, conv.stages, conv.thresholds, x_eval, y_eval,
                                cfg.timestep_grid, cfg.method, batch_size=min(cfg.batch_size, 100),
                                chunk=cfg.chunk, seed=cfg.seed, progress=progress)
    record = dict(conv.record)
    record.update(calibration_source=f"{splits.info.name} training split, {calib.shape[0]} images "
                                     f"(seeded permutation, seed {cfg.seed})",
                  timestep_grid=list(cfg.timestep_grid),
                  report={"n_images": report.n_images, "ann_accuracy": report.ann_accuracy,
                          "snn_accuracy": {str(t): report.snn_accuracy(i) for i, t in enumerate(report.timesteps)}})
    payload = {
        "model_config": conv.model.config.to_dict(),
        "model_state": {k: v.detach().cpu() for k, v in conv.model.state_dict().items()},
        "data": {"dataset": splits.info.name, "split_seed": split_seed, "info": splits.info.to_dict()},
        "conversion": record,
        "ann_source": source,
        "provenance": prior_steps(ckpt, source) + [record],
        "snnrobust_version": __version__,
        "torch_version": str(torch.__version__),
    }
    files = report.write(out)
    save_checkpoint(target, payload)
    return ConvertResult(target, conv, report, files + [target])
