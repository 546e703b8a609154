"""Training with exact resume: BPTT for SNNs, plain backprop for ANNs (``TrainConfig.method``).

Determinism: every source of randomness is derived from ``(seed, epoch)`` — the batch
order, augmentation and stochastic encoders draw from generators re-seeded at the start
of each epoch, and the model is initialised under ``seed``. Resuming from the checkpoint
of epoch e therefore continues exactly as an uninterrupted run would (on CPU, with the
same thread count), and its final weights are identical.

Distributed (``torchrun``, :mod:`snnrobust.distributed`): ``batch_size`` stays the *global*
batch. Every process draws the same batch order and augmentation, takes its contiguous share of
each global batch (no sample twice, none padded in) and scales its loss by its share, so that
DistributedDataParallel's gradient average is the gradient of the global batch's mean loss:
N processes take the same steps as one (within float tolerance; exactly so for models without
BatchNorm, or with ``sync_bn``, since per-process batch statistics differ otherwise). Only rank 0
writes the checkpoint, which holds no trace of the world size: a run resumes at any world size.
To train faster on more GPUs, raise ``batch_size`` with them and scale ``lr`` as you would for
that batch on one GPU (e.g. linearly).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.modules.batchnorm import _BatchNorm

from .. import __version__, distributed
from ..data import get_dataset
from ..data.events import frames_for_model
from ..defenses import Defense, defense_from_config, resolve_defense
from ..defenses.cost import cost_clock, cost_line, plain_step_seconds
from ..errors import CheckpointError, ConfigError
from ..io import check_output_folder, file_sha256
from ..models import SpikingClassifier, create_model
from ..models.recompute import recompute_blocks
from ..models.time_segments import time_segments
from ..spiking.cpu_kernel import kernel_used
from ..spiking.functional import fused_bptt
from .checkpoint import read_checkpoint, save_checkpoint
from .config import TrainConfig
from .evaluation import evaluate_clean
from .warm_start import warm_start

CHECKPOINT_NAME = "checkpoint.pt"
EpochCallback = Callable[[int, dict], None]


@dataclass
class TrainResult:
    model: SpikingClassifier
    checkpoint: Path
    metrics: list[dict]

    @property
    def test_accuracy(self) -> float:
        return self.metrics[-1]["test_accuracy"]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name} requested but CUDA is not available here; use --device cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch * 7919) % 2**62


def build_model_for(cfg: TrainConfig, info) -> SpikingClassifier:
    """Create the configured model, filling in (and checking) the dataset's shape."""
    opts = dict(cfg.model)
    name = opts.pop("name")
    for key, value in (("in_channels", info.in_channels), ("num_classes", info.num_classes),
                       ("image_size", info.image_size)):
        if key in opts and opts[key] != value:
            raise ConfigError(f"model {key}={opts[key]} does not fit dataset {info.name} ({key}={value}); "
                              f"remove it from the model options or pick a matching dataset")
        opts[key] = value
    return create_model(name, **opts)


def make_optimizer(cfg: TrainConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                                amsgrad=bool(cfg.amsgrad))
    return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def make_scheduler(cfg: TrainConfig, opt: torch.optim.Optimizer):
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
    if cfg.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.step_size, gamma=cfg.gamma)
    return None


def _seed_encoder(model: SpikingClassifier, seed: int) -> None:
    if hasattr(model.encoder, "manual_seed"):
        model.encoder.manual_seed(seed)


def _hflip(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    flip = torch.rand(x.shape[0], generator=gen) < 0.5
    x = x.clone()
    x[flip] = x[flip].flip(-1)
    return x


def train_step(model: torch.nn.Module, opt: torch.optim.Optimizer, scaler: "torch.amp.GradScaler",
               x: torch.Tensor, y: torch.Tensor, use_amp: bool, where: str = "",
               defense: "Optional[Defense]" = None, loss_scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """One BPTT step on images ``x`` [B, C, H, W] in [0, 1] (on the model's device) with
    labels ``y`` [B]; returns (detached loss, logits [B, K]). With a ``defense``
    (snnrobust.defenses) the step trains on ``defense.inputs`` (adversarial training's crafted
    batch) with ``defense.loss`` (CE plus SR's term), and ``defense.after_step`` follows the
    optimizer step (RAT's retraction). ``loss_scale`` multiplies the loss that is
    back-propagated (a process's share of a distributed global batch); the returned loss is not
    scaled. ``model`` may be wrapped in DistributedDataParallel: the defense crafts its inputs
    through the module inside, so that only the training step synchronises gradients."""
    opt.zero_grad(set_to_none=True)
    inner = getattr(model, "module", model)
    if defense is not None:
        x = defense.inputs(inner, x, y)
    with torch.autocast(x.device.type, dtype=torch.float16, enabled=use_amp):
        if defense is not None:
            loss, logits = defense.loss(model, x, y)
        else:
            logits = model(x)
            loss = F.cross_entropy(logits.float(), y)
    if not torch.isfinite(loss):
        raise ConfigError(f"training diverged (loss {float(loss)}){' ' + where if where else ''}; "
                          "lower the learning rate")
    scaler.scale(loss * loss_scale if loss_scale != 1.0 else loss).backward()
    scaler.step(opt)
    scaler.update()
    if defense is not None:
        defense.after_step(inner)
    return loss.detach(), logits.detach()


def _share(n: int, world: int, rank: int) -> tuple[int, int]:
    """[lo, hi) of rank ``rank``'s contiguous share of n samples split over ``world`` processes
    (sizes differ by at most one; a share may be empty)."""
    base, extra = divmod(n, world)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (1 if rank < extra else 0)


def _same_run(a: dict, b: dict) -> list[str]:
    """Keys whose values differ between two train configs (output folder excluded). A config
    stored before ``method`` existed was BPTT training."""
    a, b = {"method": "bptt", **a}, {"method": "bptt", **b}
    for d in (a, b):  # keys added with hybrid fine-tuning; older configs had their defaults
        d.setdefault("init_from", None)
        d.setdefault("init_weights", None)  # added with warm starts
        d.setdefault("threshold_scale", 0.7)
        d.setdefault("amsgrad", False)
        d.setdefault("defense", None)  # added with training-time defenses
        d.setdefault("sync_bn", False)  # added with distributed training
        d["defense"] = _with_defaults(d["defense"])  # options added later (bn_mode) at their defaults
    # fused_bptt, recompute_blocks, neuron_kernel and time_segment change how gradients are computed (to float
    # rounding), not the run
    keys = sorted((set(a) | set(b)) - {"out", "device", "download", "data_root", "fused_bptt", "recompute_blocks",
                                        "neuron_kernel", "time_segment"})
    return [k for k in keys if a.get(k) != b.get(k)]


def _with_defaults(defense: Optional[dict]) -> Optional[dict]:
    """A stored defense with every option resolved (as stored when it cannot be resolved)."""
    try:
        return resolve_defense(defense)
    except ConfigError:
        return defense


def _same_start(state: dict, source: Optional[str], step: str = "hybrid-fine-tuning") -> bool:
    """True when a stored run started from the very file ``source`` names now (same SHA-256 as
    its last provenance step of kind ``step`` records), whatever path named it then: a study
    resumed from another working directory names its converted checkpoint by another relative path."""
    if source is None or not Path(source).is_file():
        return False
    steps = [p for p in state.get("provenance") or [] if isinstance(p, dict) and p.get("step") == step]
    return bool(steps) and steps[-1].get("sha256") == file_sha256(source)


def train(cfg: TrainConfig, resume: bool = False, progress: bool = True,
          on_epoch_end: Optional[EpochCallback] = None) -> TrainResult:
    """Train ``cfg.model`` on ``cfg.dataset`` by BPTT (``cfg.method`` ann: the ReLU twin by
    backprop, which is the same loop with T = 1 and no spiking neuron); checkpoint after every
    epoch into ``cfg.out/checkpoint.pt``. ``resume=True`` continues an interrupted run exactly."""
    out = check_output_folder(cfg.out, "--out")  # a file at OUT fails here, not after an epoch of training
    ckpt_path = out / CHECKPOINT_NAME
    world, rank = distributed.world_size(), distributed.rank()
    # under torchrun each process computes on its own GPU (or the CPU)
    device = resolve_device(cfg.device) if world == 1 else torch.device(distributed.device())
    progress = progress and rank == 0
    splits = get_dataset(cfg.dataset, root=cfg.data_root, download=cfg.download, split_seed=cfg.split_seed,
                         frames=frames_for_model(cfg.model))
    train_set, test_set, info = splits.train, splits.test, splits.info
    if cfg.max_train_samples is not None:
        train_set = train_set.subset(min(cfg.max_train_samples, len(train_set)))

    state = None
    if ckpt_path.exists():
        if not resume:
            raise ConfigError(f"{ckpt_path} already exists; pass --resume to continue that run, "
                              "or choose another --out")
        state = read_checkpoint(ckpt_path)
        diff = _same_run(state.get("train_config", {}), cfg.to_dict())
        if "init_from" in diff and _same_start(state, cfg.init_from):
            diff.remove("init_from")  # the same converted checkpoint, named from another folder
        if "init_weights" in diff and _same_start(state, cfg.init_weights, "warm-start"):
            diff.remove("init_weights")
        if diff:
            raise CheckpointError(f"{ckpt_path} was trained with a different config ({', '.join(diff)} differ); "
                                  f"resume with the same config or choose another --out")
    seed_everything(cfg.seed)
    hybrid = None
    if cfg.init_from is not None:  # SNN-BP: fine-tune a converted SNN (conversion/hybrid.py)
        from ..conversion.hybrid import hybrid_model

        hybrid = hybrid_model(cfg.init_from, cfg.model, cfg.threshold_scale, info)
        model = hybrid.model.to(device)
    else:
        model = build_model_for(cfg, info)
    warm = None
    if cfg.init_weights is not None:  # the source's weights; a resumed run's own come from its checkpoint below
        warm = warm_start(cfg.init_weights, model, load=state is None)
        if progress and state is None:
            changed = warm.changes_text()
            print(f"warm start from {cfg.init_weights} (epoch {warm.source.get('epoch')})"
                  + (f"; model options changed: {changed}" if changed else ""), flush=True)
    model = model.to(device)
    opt = make_optimizer(cfg, model)
    sched = make_scheduler(cfg, opt)
    if world > 1 and defense_from_config(cfg.defense) is not None and cfg.defense.get("name") == "sr":
        raise ConfigError("defense sr runs several forward passes per step, which DistributedDataParallel does not "
                          "synchronise; train it without torchrun")
    use_amp = cfg.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    metrics: list[dict] = []
    start_epoch = 0
    if state is not None:
        model.load_state_dict(state["model_state"])
        opt.load_state_dict(state["optimizer_state"])
        if sched is not None and state.get("scheduler_state") is not None:
            sched.load_state_dict(state["scheduler_state"])
        if state.get("scaler_state"):
            scaler.load_state_dict(state["scaler_state"])
        metrics = list(state.get("metrics", []))
        start_epoch = int(state["epoch"])
        if start_epoch >= cfg.epochs:
            if progress:
                print(f"{ckpt_path} already finished {start_epoch} epochs; nothing to do")
            model.eval()
            return TrainResult(model, ckpt_path, metrics)

    if cfg.time_segment is not None and any(isinstance(m, _BatchNorm) for m in model.modules()):
        raise ConfigError("config 'time_segment' needs a model without BatchNorm (training-mode BatchNorm normalizes "
                          "over all T steps at once); use recompute_blocks for this model")
    net = model  # what the training step calls: the model, or DistributedDataParallel around it
    if world > 1:
        if cfg.sync_bn:
            if device.type != "cuda":
                raise ConfigError("sync_bn needs GPUs (torch's SyncBatchNorm runs on CUDA only); on CPUs train without "
                                  "it, or with a model without BatchNorm for results equal to one process")
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda"
                                                        else None)
    augment = info.augment if cfg.augment == "auto" else (None if cfg.augment == "none" else cfg.augment)
    defense = defense_from_config(cfg.defense)
    plain_step: Optional[float] = None  # seconds of one plain step (defended runs: the cost baseline)
    probe_seconds = 0.0  # time spent measuring it, not counted as the defense's
    clock = cost_clock(device)  # CPU: process time, which other processes on the machine do not inflate
    for epoch in range(start_epoch, cfg.epochs):
        t0, c0 = time.time(), clock()
        es = _epoch_seed(cfg.seed, epoch)
        gen = torch.Generator().manual_seed(es)
        _seed_encoder(model, es)
        if defense is not None:
            defense.start_epoch(es)
        net.train()
        order = torch.randperm(len(train_set), generator=gen)
        batches = range(0, len(order), cfg.batch_size)
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(batches, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch", leave=False)
        seen, correct, loss_sum = 0, 0, 0.0
        for s in (bar if bar is not None else batches):
            x, y = train_set.batch(order[s:s + cfg.batch_size])
            if augment == "hflip":
                x = _hflip(x, gen)
            n_global = y.numel()
            if world > 1:  # this process's contiguous share of the global batch (drawn alike everywhere)
                if n_global < world:  # a last batch too small to give every process a sample
                    continue
                lo, hi = _share(n_global, world, rank)
                x, y = x[lo:hi], y[lo:hi]
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            if defense is not None and plain_step is None:  # on a copy: the run itself is untouched
                t_probe = clock()
                plain_step = plain_step_seconds(model, lambda m: make_optimizer(cfg, m), x, y, clock=clock)
                probe_seconds = clock() - t_probe
            lean = cfg.fused_bptt or cfg.neuron_kernel  # the kernel runs the fused function
            with fused_bptt(model, lean), recompute_blocks(model, cfg.recompute_blocks), \
                    kernel_used(cfg.neuron_kernel), time_segments(model, cfg.time_segment):
                loss, logits = train_step(net, opt, scaler, x, y, use_amp, where=f"in epoch {epoch + 1}",
                                          defense=defense, loss_scale=world * y.numel() / n_global)
            seen += y.numel()
            loss_sum += float(loss.detach()) * y.numel()
            correct += int((logits.argmax(1) == y).sum())
            if bar is not None:
                bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}")
        if bar is not None:
            bar.close()
        if world > 1:  # the epoch's numbers over every process's share
            seen, correct, loss_sum = (sum(v) for v in zip(*distributed.gather((seen, correct, loss_sum))))
        train_seconds = clock() - c0 - probe_seconds
        probe_seconds = 0.0
        if sched is not None:
            sched.step()
        _seed_encoder(model, cfg.seed)  # evaluation draws are the same every epoch
        test = evaluate_clean(model, test_set, cfg.eval_batch_size, device)
        m = {"epoch": epoch + 1, "train_loss": loss_sum / seen, "train_accuracy": correct / seen,
             "test_loss": test.loss, "test_accuracy": test.accuracy, "lr": opt.param_groups[0]["lr"],
             "seconds": time.time() - t0}
        defense_stats = defense.epoch_stats(model) if defense is not None else {}
        if defense is not None:  # its own numbers (SR's term, RAT's orthogonality) and its cost
            m.update(defense_stats)
            m.update(train_cost_seconds=train_seconds, plain_step_cost_seconds=plain_step, train_batches=len(batches),
                     cost_clock="cpu" if device.type != "cuda" else "wall")
        metrics.append(m)
        try:
            if rank == 0:  # one writer; the others wait at the barrier below
                save_checkpoint(ckpt_path, {
                    "epoch": epoch + 1,
                    "model_config": model.config.to_dict(),
                    "train_config": cfg.to_dict(),
                    "model_state": model.state_dict(),
                    "optimizer_state": opt.state_dict(),
                    "scheduler_state": sched.state_dict() if sched is not None else None,
                    "scaler_state": scaler.state_dict() if use_amp else None,
                    "metrics": metrics,
                    "data": {"dataset": cfg.dataset, "split_seed": cfg.split_seed, "info": info.to_dict()},
                    "snnrobust_version": __version__,
                    "torch_version": str(torch.__version__),
                    # hybrid: the converted model's ann_source and provenance, plus this fine-tuning step
                    **(hybrid.checkpoint_fields(cfg.to_dict(), epoch + 1, metrics) if hybrid is not None else {}),
                    # warm start: the source's provenance plus a "warm-start" step
                    **(warm.checkpoint_fields(cfg.to_dict(), epoch + 1, metrics) if warm is not None else {}),
                })
        except OSError as e:  # disk full, folder removed or made read-only mid-run
            raise ConfigError(f"cannot write checkpoint {ckpt_path} after epoch {epoch + 1}: {e.strerror or e}; "
                              f"free space or choose another --out (an earlier checkpoint there is intact)") from None
        distributed.barrier()  # the checkpoint is complete before any process goes on
        if progress:
            print(f"epoch {epoch + 1}/{cfg.epochs}: train loss {m['train_loss']:.4f} acc {m['train_accuracy']:.4f} | "
                  f"test loss {m['test_loss']:.4f} acc {m['test_accuracy']:.4f} | {m['seconds']:.1f}s", flush=True)
            if defense is not None and plain_step is not None:
                stats = ", ".join(f"{k} {v:.4g}" for k, v in defense_stats.items())
                print("  " + cost_line(defense.name, train_seconds, len(batches), plain_step, cfg.method,
                                       cpu=device.type != "cuda")
                      + (f"; {stats}" if stats else ""), flush=True)
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1, m)
    model.eval()
    return TrainResult(model, ckpt_path, metrics)
